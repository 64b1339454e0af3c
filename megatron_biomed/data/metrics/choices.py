"""Accuracy and macro-F1 of picked answers (multiple choice, yes/no/maybe classification)."""

from __future__ import annotations

from sklearn.metrics import f1_score

from megatron_biomed.data.metrics.score import Score


def accuracy(pred, gold) -> Score:
    """Share of items whose pick equals the gold answer; per item 1.0 / 0.0."""
    hits = tuple(float(p == g) for p, g in zip(pred, gold, strict=True))
    return Score("acc", sum(hits) / len(hits) if hits else float("nan"), hits)


def macro_f1(pred, gold, num_labels: int) -> Score:
    """Mean over the ``num_labels`` classes of each class's F1 (0 for a class neither predicted nor gold), as
    PubMedQA and BioASQ report it: scikit-learn's ``f1_score(average="macro", labels=range(num_labels),
    zero_division=0)``."""
    pred, gold = list(pred), list(gold)
    if len(pred) != len(gold):
        raise ValueError(f"{len(pred)} predictions for {len(gold)} gold labels")
    if not gold:
        return Score("macro_f1", float("nan"))
    value = f1_score(gold, pred, labels=list(range(num_labels)), average="macro", zero_division=0)
    return Score("macro_f1", float(value))
