"""Our ROUGE rows are rouge-score's numbers (called directly here), with the empty-text rule."""

from __future__ import annotations

import pytest
from rouge_score import rouge_scorer

from megatron_biomed.data.metrics.text import ROUGE_TYPES, rouge


def test_rouge_equals_rouge_score_called_directly():
    preds = ["Who makes cetirizine?", "What are the treatments for Williams syndrome?", "", "running fevers"]
    refs = ["Who manufactures cetirizine?", "Where can I get genetic testing for william's syndrome?", "What is X?",
            "runs fever"]  # fmt: skip
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    ours = rouge(preds, refs)
    assert [s.metric for s in ours] == ["rouge1", "rouge2", "rougeL"]
    for s in ours:
        want = [scorer.score(r, p)[s.metric].fmeasure if p else 0.0 for p, r in zip(preds, refs)]
        assert s.per_item == pytest.approx(want)
        assert s.value == pytest.approx(sum(want) / len(want))
    assert ours[0].per_item[3] == 1.0  # Porter stemmer on
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        rouge(["a", "b"], ["a"])
