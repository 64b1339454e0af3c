"""Scores of predictions against gold answers: pure functions on plain Python values (no model, no torch).

One module per kind of task, each computing what the field reports with the library the field uses
(scikit-learn for accuracy/F1/correlation, seqeval for entity-level F1, rouge-score for ROUGE), so that our numbers
are the published definitions. Every metric returns :class:`Score` rows: the metric's name, its value over all
items and, where the metric is a mean over items, each item's value (for the standard error and the logged samples).

It lives in the data layer (below ``finetune`` and ``eval``, tests/test_import_layers.py) because both score
with it: a fine-tuning task names its benchmark's metrics, the evaluation runner and suite compute them.
"""

from megatron_biomed.data.metrics.score import Score, mean_stderr

__all__ = ["Score", "mean_stderr"]
