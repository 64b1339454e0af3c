"""The row every metric returns, and the standard error of a mean over items."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    """``metric`` over all items is ``value``; ``per_item``: each item's value where the metric is their mean
    (accuracy, ROUGE), else None (F1 over a corpus, a correlation)."""

    metric: str
    value: float
    per_item: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.per_item is not None and not isinstance(self.per_item, tuple):
            object.__setattr__(self, "per_item", tuple(self.per_item))

    @property
    def stderr(self) -> float | None:
        return mean_stderr(self.per_item) if self.per_item is not None else None


def mean_stderr(values) -> float:
    """Standard error of the mean of ``values`` (sample variance); NaN under two values."""
    values = list(values)
    n = len(values)
    if n < 2:
        return float("nan")
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return math.sqrt(var / n)
