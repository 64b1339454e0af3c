"""Entity-level F1 (data/metrics/entities.py) against seqeval called directly, and against counts by hand, on fixed
predictions including the edge cases of BIO decoding."""

from __future__ import annotations

import pytest
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from megatron_biomed.data.metrics.entities import entity_scores

GOLD = [["B-Chem", "I-Chem", "O", "B-Dis", "O"], ["O", "B-Dis", "I-Dis", "I-Dis"], ["O", "O"]]
CASES = {
    "perfect": (GOLD, (1.0, 1.0, 1.0)),
    "empty predictions": ([["O"] * len(g) for g in GOLD], (0.0, 0.0, 0.0)),
    # Disease never predicted (a label absent from the predictions): 1 of 3 gold found, 1 of 1 predicted right.
    "label absent": ([["B-Chem", "I-Chem", "O", "O", "O"], ["O"] * 4, ["O", "O"]], (0.5, 1.0, 1 / 3)),
    # An entity cut short (by a window or truncation) is a miss and a false positive; a spurious one in sentence 3.
    "cut entity": ([["B-Chem", "I-Chem", "O", "B-Dis", "O"], ["O", "B-Dis", "I-Dis", "O"], ["B-Dis", "O"]],
                   (4 / 7, 0.5, 2 / 3)),
    # I- without B-: the default (conlleval) mode reads "I-Dis I-Dis I-Dis" as one entity, found; the wrong type
    # "I-Chem" after O starts a Chem entity that matches nothing.
    "I without B": ([["B-Chem", "I-Chem", "O", "I-Chem", "O"], ["O", "I-Dis", "I-Dis", "I-Dis"], ["O", "O"]],
                    (2 / 3, 2 / 3, 2 / 3)),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("mode", ["default", "strict"])
def test_entity_scores_equal_seqeval(name, mode):
    pred, by_hand = CASES[name]
    got = entity_scores(pred, GOLD, mode=mode)
    assert [s.metric for s in got] == ["entity_f1", "precision", "recall"]
    kw = {"mode": "strict", "scheme": IOB2} if mode == "strict" else {}
    want = [f(GOLD, pred, zero_division=0, **kw) for f in (f1_score, precision_score, recall_score)]
    assert [s.value for s in got] == pytest.approx(want, abs=1e-12)
    if mode == "default":
        assert [s.value for s in got] == pytest.approx(by_hand, abs=1e-12)


def test_strict_mode_refuses_an_inside_tag_without_begin():
    pred = CASES["I without B"][0]
    f1, p, r = (s.value for s in entity_scores(pred, GOLD, mode="strict"))
    # Strict IOB2: only Chem (sentence 1) is an entity of the predictions, and it is right: P 1, R 1/3.
    assert (p, r) == pytest.approx((1.0, 1 / 3)) and f1 == pytest.approx(0.5)


def test_untyped_tags_and_no_gold_entities():
    assert [s.value for s in entity_scores([["B", "I", "O"]], [["B", "I", "O"]])] == [1.0, 1.0, 1.0]
    assert [s.value for s in entity_scores([["B", "O"]], [["O", "O"]])] == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="differ"):
        entity_scores([["O"]], [["O", "O"]])
