"""ROUGE of generated text against references, with Google's ``rouge-score`` package (the implementation the
field cites). BERTScore is not offered: neither the bert-score package nor a BERTScore model is on this machine,
and the project downloads neither, so no code path for it could be tested.

ROUGE-1/2/L F1 per item with ``rouge_score``'s default tokenizer (lower-cased, non-alphanumerics as spaces) and the
Porter stemmer on, as BioMamba's mimic_evaluate.py (LeoYML/BioMamba @ e61db22) calls it; an empty prediction or
reference scores 0 (their ``if pred and ref`` guard). The value is the mean over items (``rougeL`` is the
sentence-level LCS, not ``rougeLsum``).
"""

from __future__ import annotations

from collections.abc import Sequence

from megatron_biomed.data.metrics.score import Score

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge_f1(predictions: Sequence[str], references: Sequence[str]) -> dict[str, list[float]]:
    """Per item ROUGE-1/2/L F1 of each prediction against its reference (``{type: [value per item]}``)."""
    from rouge_score import rouge_scorer  # optional dependency (requirements.txt): only the ROUGE tasks need it

    if len(predictions) != len(references):
        raise ValueError(f"rouge: {len(predictions)} predictions for {len(references)} references")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    out: dict[str, list[float]] = {t: [] for t in ROUGE_TYPES}
    for pred, ref in zip(predictions, references):
        scores = scorer.score(ref, pred) if pred and ref else None
        for t in ROUGE_TYPES:
            out[t].append(scores[t].fmeasure if scores else 0.0)
    return out


def rouge(predictions: Sequence[str], references: Sequence[str]) -> list[Score]:
    """``rouge1``, ``rouge2``, ``rougeL``: mean F1 over items, with each item's value."""
    per_item = rouge_f1(predictions, references)
    return [Score(t, sum(v) / len(v) if v else float("nan"), tuple(v)) for t, v in per_item.items()]
