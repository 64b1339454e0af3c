"""Precision, recall and F1 of extracted relation triples against gold, as BioGPT scores its end-to-end relation
extraction (microsoft/BioGPT @ 648f7d6503c038b44e70b7510bf431c7be94e891).

Two definitions, because BioGPT uses two:
* :func:`micro_prf` -- BC5CDR (examples/RE-BC5CDR/infer.sh: postprocess.py maps each generated name to its MeSH id
  through the split's name -> id table, "-1" when absent, then the BioCreative V CDR evaluation jar
  ``eval_relation.sh``): true positives, false positives and false negatives of (document, chemical id, disease
  id) pairs counted over the whole corpus; P = TP/(TP+FP), R = TP/(TP+FN), F1 their harmonic mean. A pair is
  counted once per document (our reading of the jar: each document's relations are a set).
* :func:`hard_match_prf` -- KD-DTI and DDI (examples/RE-DTI/hard_match_evaluation.py, the same file in RE-DDI):
  names lower-cased with spaces removed; per document, precision and recall of the predicted set against the gold
  set, each the larger of the two "normalised" versions of both sets (``normed_eval``: the bracketed
  abbreviation of each name, or the name without it; then ``normalize_name``: a final digit as a Roman numeral,
  "-type" removed, non-alphanumerics removed); an empty prediction has precision 1 if the gold is empty too,
  else 0 (recall likewise); the document's F1 is the harmonic mean of its P and R. Reported: the means over
  documents of P, of R and of F1 (what their script prints as "tp p", "tp r", "tp micro f1").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from megatron_biomed.data.metrics.score import Score

Triple = tuple[str, str, str]


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2.0 * p * r / (p + r)


def micro_prf(pred: Sequence[Iterable], gold: Sequence[Iterable]) -> list[Score]:
    """``f1``, ``precision``, ``recall`` over all documents: ``pred[i]`` / ``gold[i]`` are document i's
    predicted / gold items (any hashable, e.g. id pairs), each counted once per document. 0 where a ratio's
    denominator is 0. ``per_item``: each document's own F1 for ``f1`` (for logs; the value is not their mean)."""
    if len(pred) != len(gold):
        raise ValueError(f"micro_prf: {len(pred)} predictions for {len(gold)} documents")
    tp = fp = fn = 0
    per_doc = []
    for p, g in zip(pred, gold):
        p, g = set(p), set(g)
        hit = len(p & g)
        tp, fp, fn = tp + hit, fp + len(p - g), fn + len(g - p)
        per_doc.append(2 * hit / (len(p) + len(g)) if p or g else 1.0)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return [Score("f1", _f1(precision, recall), tuple(per_doc)), Score("precision", precision),
            Score("recall", recall)]  # fmt: skip


def ids_of(triples: Iterable[Triple], head_ids: Mapping[str, str], tail_ids: Mapping[str, str]) -> set:
    """(head id, tail id) of each named triple, a name absent from its table giving "-1" (RE-BC5CDR/postprocess.py:
    ``ent2id['chemical2id'].get(chemical.strip(), "-1")``)."""
    return {(head_ids.get(h.strip(), "-1"), tail_ids.get(t.strip(), "-1")) for h, _, t in triples}


# ---- KD-DTI / DDI hard match (examples/RE-DTI/hard_match_evaluation.py) -----------------------------------------

_ROMAN = {"0": "0", "1": "I", "2": "II", "3": "III", "4": "IV", "5": "V", "6": "VI", "7": "VII", "8": "VIII", "9": "IX"}


def squash(name: str) -> str:
    """``do_eval``'s first step: stripped, lower-cased, spaces removed."""
    return name.strip().lower().replace(" ", "")


def normalize_name(s: str) -> str:
    """``normalize_name``: a final digit after a non-digit (names over 2 characters) written as a Roman numeral,
    "-type" removed, then every run of non-alphanumerics removed."""
    s = s.strip()
    if len(s) > 2 and s[-1].isnumeric() and not s[-2].isnumeric() and s[-1] in _ROMAN:
        s = s[:-1] + _ROMAN[s[-1]]
    s = s.replace("-type", "")
    return re.sub("[^a-zA-Z0-9]+", "", s)


def without_abbreviation(s: str) -> str:
    """``rm_abbr``: "aaa (bb)" -> "aaa", normalised."""
    s = s.strip()
    return normalize_name(s[: s.rfind("(")].strip() if "(" in s and s.endswith(")") else s)


def abbreviation(s: str) -> str:
    """``get_abbr``: "aaa (bb)" -> "bb", normalised (a name without one: itself, normalised)."""
    s = s.strip()
    return normalize_name(s[s.rfind("(") + 1 : -1].strip() if "(" in s and s.endswith(")") else s)


def _precision(pred: set, gold: set) -> float:
    return float(pred == gold) if not pred else len(pred & gold) / len(pred)


def _recall(pred: set, gold: set) -> float:
    return float(pred == gold) if not gold else len(pred & gold) / len(gold)


def _normed(metric, pred: set, gold: set) -> float:
    """``normed_eval``: the larger of the metric on abbreviations and on names without them."""

    def norm(fn, s):  # noqa: E306 - a one-line helper
        return {tuple(fn(x) for x in t) for t in s}

    return max(metric(norm(abbreviation, pred), norm(abbreviation, gold)),
               metric(norm(without_abbreviation, pred), norm(without_abbreviation, gold)))  # fmt: skip


def hard_match_prf(pred: Sequence[Iterable[Triple]], gold: Sequence[Iterable[Triple]]) -> list[Score]:
    """``f1``, ``precision``, ``recall``: means over documents of BioGPT's per-document hard-match scores;
    ``pred[i]`` / ``gold[i]``: document i's ``(head, relation, tail)`` triples (any order, duplicates ignored)."""
    if len(pred) != len(gold):
        raise ValueError(f"hard_match_prf: {len(pred)} predictions for {len(gold)} documents")
    ps, rs, fs = [], [], []
    for p, g in zip(pred, gold):
        p = {tuple(squash(x) for x in t) for t in p}
        g = {tuple(squash(x) for x in t) for t in g}
        ps.append(_normed(_precision, p, g))
        rs.append(_normed(_recall, p, g))
        fs.append(_f1(ps[-1], rs[-1]))
    n = len(fs)
    if n == 0:
        return [Score("f1", float("nan"), ()), Score("precision", float("nan"), ()), Score("recall", float("nan"), ())]
    return [Score("f1", sum(fs) / n, tuple(fs)), Score("precision", sum(ps) / n, tuple(ps)),
            Score("recall", sum(rs) / n, tuple(rs))]  # fmt: skip
