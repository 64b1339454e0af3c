"""F1 of relation and document labels, and the Pearson correlation of similarity scores, with scikit-learn / scipy.

* :func:`micro_f1` -- micro-averaged F1 over the positive classes of a single-label task: the negative class
  (ChemProt's ``false``, DDI's ``DDI-false``, GAD's ``0``) is left out of the average, so predicting it is
  never a true positive and a negative item predicted as a positive class is a false positive. BLURB
  (arXiv 2007.15779, Table 3: ChemProt, DDI and GAD report micro F1) as BioMedLM's fine-tuning computes it
  (stanford-crfm/BioMedLM finetune/seqcls/run_seqcls_gpt.py @ 9e35fdd, ``metric_name == "PRF1"``: TP = right
  and not label 0, P over predictions not 0, R over gold not 0) and as BLUE, BLURB's predecessor, scores ChemProt
  (ncbi-nlp/BLUE_Benchmark blue/eval_rel.py @ 2b3dc24: micro P/R/F1 over every label but ``false``);
  scikit-learn's ``f1_score(average="micro", labels=positives)`` is the same count.
* :func:`binary_f1` -- F1 of one positive class (GAD); equal to :func:`micro_f1` with one positive class.
* :func:`multilabel_micro_f1` -- micro F1 over the label columns of a multi-label task (HoC): BLURB reports
  "micro F1 across the ten cancer hallmarks" at the abstract level (arXiv 2007.15779 §2.3.5 / Table 3);
  microsoft/BioGPT examples/DC-HoC/hard_match_evaluation.py @ 648f7d6 calls the same
  ``f1_score(average="micro")`` on label-indicator rows. (BLUE scored HoC with an example-based F1 instead:
  ncbi-nlp/BLUE_Benchmark blue/hoc/eval_hoc.py @ 1babff1.)
* :func:`pearson` -- Pearson's r of predicted and gold similarity (BIOSSES; BLURB Table 3), scipy's
  ``pearsonr`` as BioMedLM's fine-tuning calls it (run_seqcls_gpt.py, ``metric_name == "pearsonr"``). A
  constant prediction or gold has no correlation: the value is NaN (scipy warns and returns NaN; we return
  NaN without calling it).

Ill-defined F1s (no positive predicted and none gold) are 0.0 (``zero_division=0``), as BioMedLM's formula
gives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import pearsonr
from sklearn.metrics import f1_score, precision_recall_fscore_support

from megatron_biomed.data.metrics.score import Score


def positive_labels(num_labels: int, negative: Sequence[int] = ()) -> list[int]:
    """The label ids ``0 .. num_labels - 1`` that are not ``negative``."""
    neg = set(negative)
    bad = [n for n in neg if not 0 <= n < num_labels]
    if bad:
        raise ValueError(f"negative label ids {sorted(bad)} out of range for {num_labels} labels")
    return [c for c in range(num_labels) if c not in neg]


def micro_f1(pred, gold, num_labels: int, negative: Sequence[int] = ()) -> list[Score]:
    """``micro_f1``, ``precision``, ``recall`` over the positive classes (all ``num_labels`` labels but
    ``negative``): counts of every positive class pooled, so a class absent from the predictions still counts
    its gold items as misses."""
    labels = positive_labels(num_labels, negative)
    if not labels:
        raise ValueError(f"every one of the {num_labels} labels is negative: micro F1 needs a positive class")
    pred, gold = list(pred), list(gold)
    if len(pred) != len(gold):
        raise ValueError(f"{len(pred)} predictions for {len(gold)} gold labels")
    if not gold:
        return [Score("micro_f1", float("nan")), Score("precision", float("nan")), Score("recall", float("nan"))]
    p, r, f, _ = precision_recall_fscore_support(gold, pred, labels=labels, average="micro", zero_division=0)
    return [Score("micro_f1", float(f)), Score("precision", float(p)), Score("recall", float(r))]


def binary_f1(pred, gold, positive: int = 1) -> Score:
    """F1 of the class ``positive`` (scikit-learn ``average="binary"``): GAD's metric."""
    pred, gold = list(pred), list(gold)
    if not gold:
        return Score("f1", float("nan"))
    return Score("f1", float(f1_score(gold, pred, pos_label=positive, average="binary", zero_division=0)))


def multilabel_micro_f1(pred, gold) -> list[Score]:
    """``micro_f1``, ``precision``, ``recall`` of 0/1 label-indicator rows ``pred`` and ``gold``
    ([items, labels]): every (item, label) decision pooled. Items with no label (a document without a hallmark)
    add only their false positives."""
    p_arr = np.asarray(pred, dtype=int)
    g_arr = np.asarray(gold, dtype=int)
    if p_arr.shape != g_arr.shape or (g_arr.size and g_arr.ndim != 2):
        raise ValueError(f"predictions {p_arr.shape} and gold {g_arr.shape} must be the same [items, labels] shape")
    if not g_arr.size:
        return [Score("micro_f1", float("nan")), Score("precision", float("nan")), Score("recall", float("nan"))]
    p, r, f, _ = precision_recall_fscore_support(g_arr, p_arr, average="micro", zero_division=0)
    return [Score("micro_f1", float(f)), Score("precision", float(p)), Score("recall", float(r))]


def pearson(pred, gold) -> Score:
    """Pearson's r of ``pred`` and ``gold`` (scipy); NaN under two items or when either side is constant."""
    x = np.asarray(pred, dtype=np.float64)
    y = np.asarray(gold, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"{x.shape} predictions for {y.shape} gold scores")
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return Score("pearson", float("nan"))
    r = float(pearsonr(x, y).statistic)
    return Score("pearson", r if math.isfinite(r) else float("nan"))
