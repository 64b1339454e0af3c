"""data/metrics/classification.py and choices.macro_f1 against scikit-learn / scipy called directly on fixed
predictions, and against the published formulas written out here (BioMedLM's PRF1 for micro F1 over the
positive classes), with the edge cases: labels absent from the predictions, all-negative and empty
predictions, constant predictions for Pearson."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import f1_score, precision_score, recall_score

from megatron_biomed.data.metrics.choices import macro_f1
from megatron_biomed.data.metrics.classification import binary_f1, micro_f1, multilabel_micro_f1, pearson

# 6 labels, 0 the negative class ("false"); label 5 is gold once and never predicted, label 4 never gold.
GOLD = [0, 1, 1, 2, 3, 0, 0, 2, 5, 1, 3, 0]
PRED = [0, 1, 2, 2, 0, 4, 0, 2, 1, 1, 3, 1]


def biomedlm_prf1(pred, gold, negative=0):
    """stanford-crfm/BioMedLM finetune/seqcls/run_seqcls_gpt.py @ 9e35fdd, metric_name == "PRF1", written out."""
    tp = sum(p == g and p != negative for p, g in zip(pred, gold))
    p_total = sum(p != negative for p in pred)
    l_total = sum(g != negative for g in gold)
    p = tp / p_total if p_total else 0
    r = tp / l_total if l_total else 0
    return p, r, (2 * p * r / (p + r) if p + r else 0)


def values(scores):
    return {s.metric: s.value for s in scores}


def test_micro_f1_over_positive_classes():
    got = values(micro_f1(PRED, GOLD, 6, negative=[0]))
    positives = [1, 2, 3, 4, 5]
    assert got["micro_f1"] == pytest.approx(f1_score(GOLD, PRED, labels=positives, average="micro"), abs=1e-15)
    assert got["precision"] == pytest.approx(precision_score(GOLD, PRED, labels=positives, average="micro"))
    assert got["recall"] == pytest.approx(recall_score(GOLD, PRED, labels=positives, average="micro"))
    p, r, f = biomedlm_prf1(PRED, GOLD)
    assert (got["precision"], got["recall"], got["micro_f1"]) == pytest.approx((p, r, f), abs=1e-15)
    assert f == pytest.approx(2 * 5 / (2 * 5 + 4 + 3))  # 5 right positives, 4 wrong positive picks, 3 missed
    # No negative class: micro F1 over all labels of single-label items is accuracy.
    acc = sum(p == g for p, g in zip(PRED, GOLD)) / len(GOLD)
    assert values(micro_f1(PRED, GOLD, 6))["micro_f1"] == pytest.approx(acc, abs=1e-15)


def test_micro_f1_edge_cases():
    # All-negative predictions: nothing predicted positive -> precision, recall and F1 are 0 (no exception).
    none = values(micro_f1([0] * len(GOLD), GOLD, 6, negative=[0]))
    assert none == {"micro_f1": 0.0, "precision": 0.0, "recall": 0.0}
    assert none["micro_f1"] == f1_score(GOLD, [0] * len(GOLD), labels=[1, 2, 3, 4, 5], average="micro",
                                        zero_division=0)  # fmt: skip
    # Only negatives in gold and predictions: ill-defined, 0.0 as BioMedLM's formula gives.
    assert values(micro_f1([0, 0], [0, 0], 3, negative=[0]))["micro_f1"] == 0.0 == biomedlm_prf1([0, 0], [0, 0])[2]
    # No items: NaN, not a crash.
    assert math.isnan(values(micro_f1([], [], 3, negative=[0]))["micro_f1"])
    with pytest.raises(ValueError, match="every one of the 2 labels is negative"):
        micro_f1([0], [1], 2, negative=[0, 1])
    with pytest.raises(ValueError, match="out of range"):
        micro_f1([0], [1], 2, negative=[2])
    with pytest.raises(ValueError, match="2 predictions for 1 gold"):
        micro_f1([0, 1], [1], 2)


def test_binary_f1_is_micro_f1_with_one_positive_class():
    gold = [1, 0, 1, 1, 0, 0, 1, 0]
    pred = [1, 1, 0, 1, 0, 0, 1, 1]
    f = binary_f1(pred, gold)
    assert f.metric == "f1" and f.value == pytest.approx(f1_score(gold, pred, average="binary"), abs=1e-15)
    assert values(micro_f1(pred, gold, 2, negative=[0]))["micro_f1"] == pytest.approx(f.value, abs=1e-15)
    assert binary_f1([0] * 8, gold).value == 0.0  # all negative: no exception
    assert math.isnan(binary_f1([], []).value)


def test_multilabel_micro_f1():
    rng = np.random.default_rng(0)
    gold = (rng.random((9, 10)) < 0.3).astype(int)
    gold[2] = 0  # a document with no hallmark
    pred = (rng.random((9, 10)) < 0.3).astype(int)
    pred[:, 7] = 0  # a label never predicted
    got = values(multilabel_micro_f1(pred.tolist(), gold.tolist()))
    assert got["micro_f1"] == pytest.approx(f1_score(gold, pred, average="micro"), abs=1e-15)
    tp = int((pred & gold).sum())
    assert got["micro_f1"] == pytest.approx(2 * tp / (pred.sum() + gold.sum()), abs=1e-15)  # pooled decisions
    # Empty predictions (no label anywhere): 0, no exception; no items: NaN.
    assert values(multilabel_micro_f1(np.zeros_like(gold), gold))["micro_f1"] == 0.0
    assert math.isnan(values(multilabel_micro_f1(np.zeros((0, 10)), np.zeros((0, 10))))["micro_f1"])
    with pytest.raises(ValueError, match="same"):
        multilabel_micro_f1(pred[:, :9], gold)


def test_pearson():
    rng = np.random.default_rng(1)
    gold = rng.uniform(0, 4, 16)
    pred = gold + rng.normal(0, 1, 16)
    r = pearson(pred.tolist(), gold.tolist())
    assert r.metric == "pearson" and r.value == pytest.approx(pearsonr(pred, gold).statistic, abs=1e-14)
    # Constant predictions (or gold): no correlation; scipy warns and returns NaN, we return NaN quietly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(pearsonr(np.full(16, 2.0), gold).statistic)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(pearson([2.0] * 16, gold.tolist()).value)
        assert math.isnan(pearson(pred.tolist(), [1.0] * 16).value)
        assert math.isnan(pearson([1.0], [2.0]).value)
    with pytest.raises(ValueError):
        pearson([1.0, 2.0], [1.0])


def test_macro_f1_is_scikit_learn():
    got = macro_f1(PRED, GOLD, 6)
    assert got.value == pytest.approx(f1_score(GOLD, PRED, labels=range(6), average="macro", zero_division=0))
    # A label neither gold nor predicted counts as 0 (PubMedQA's three labels on a two-label slice).
    assert macro_f1([0, 1], [0, 1], 3).value == pytest.approx(2 / 3)
    assert math.isnan(macro_f1([], [], 3).value)
