"""Accuracy and macro-F1 of picked answers (multiple choice, yes/no/maybe classification)."""

from __future__ import annotations

from megatron_biomed.data.metrics.score import Score


def accuracy(pred, gold) -> Score:
    """Share of items whose pick equals the gold answer; per item 1.0 / 0.0."""
    hits = tuple(float(p == g) for p, g in zip(pred, gold, strict=True))
    return Score("acc", sum(hits) / len(hits) if hits else float("nan"), hits)


def macro_f1(pred, gold, num_labels: int) -> Score:
    """Mean over the ``num_labels`` classes of each class's F1 (0 for a class neither predicted nor gold), as
    PubMedQA and BioASQ report it (scikit-learn's ``f1_score(average="macro", labels=range(num_labels),
    zero_division=0)``)."""
    f1 = []
    for c in range(num_labels):
        tp = sum(1 for p, g in zip(pred, gold, strict=True) if p == c and g == c)
        fp = sum(1 for p, g in zip(pred, gold) if p == c and g != c)
        fn = sum(1 for p, g in zip(pred, gold) if p != c and g == c)
        f1.append(2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0)
    return Score("macro_f1", sum(f1) / len(f1))
