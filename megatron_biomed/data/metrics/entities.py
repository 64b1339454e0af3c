"""Entity-level precision, recall and F1 of BIO-tagged sequences (named-entity recognition), by seqeval.

An entity counts as found when its type and its first and last word match a gold entity exactly. BLURB reports
this entity-level (exact-match) F1 for its NER sets (Gu et al., arXiv 2007.15779; section not re-read here); the
usual fine-tuning code computes it with seqeval in its default mode (conlleval-compatible: an ``I-X`` after ``O`` or
after another type starts a new entity), e.g. huggingface/transformers examples/pytorch/token-classification
run_ner.py @ 0a8c149 through ``evaluate.load("seqeval")`` (overall precision / recall / f1).
``mode="strict"`` (seqeval's IOB2 scheme: such an ``I-X`` is no entity) is offered for comparison.
"""

from __future__ import annotations

from collections.abc import Sequence

from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from megatron_biomed.data.metrics.score import Score

MODES = ("default", "strict")


def entity_scores(pred: Sequence[Sequence[str]], gold: Sequence[Sequence[str]], mode: str = "default") -> list[Score]:
    """``entity_f1`` (first), ``precision`` and ``recall`` over all sequences (micro-averaged over entities and
    types); 0 where nothing was predicted or nothing is gold (seqeval's ``zero_division=0``). ``pred`` and
    ``gold`` hold one tag list per sequence, of equal lengths."""
    if mode not in MODES:
        raise ValueError(f"entity_scores mode {mode!r} is not one of {', '.join(MODES)}")
    pred, gold = [list(p) for p in pred], [list(g) for g in gold]
    if len(pred) != len(gold) or any(len(p) != len(g) for p, g in zip(pred, gold)):
        raise ValueError("entity_scores: predictions and gold tags differ in number or length")
    kw = {"mode": "strict", "scheme": IOB2} if mode == "strict" else {}
    return [
        Score("entity_f1", float(f1_score(gold, pred, zero_division=0, **kw))),
        Score("precision", float(precision_score(gold, pred, zero_division=0, **kw))),
        Score("recall", float(recall_score(gold, pred, zero_division=0, **kw))),
    ]
