"""Reader for document classification: the Hallmarks of Cancer corpus (HoC), as documents or as sentences.

* Documents (``.jsonl``): one abstract per line, ``{"pmid", "text", "labels", ...}`` with ``text`` one
  sentence per line and ``labels`` the corpus's raw label file (sb895/Hallmarks-of-Cancer @ 3bc6e6d
  labels/<PMID>.txt): one group per sentence, each group opened by ``<``; a group holds the sentence's labels
  joined by ``AND``, each a path ``Hallmark--subclass--...`` (or ``NULL``). The document's labels are the top
  levels (the ten hallmarks) of all its sentences' labels: BLURB classifies abstracts into the ten hallmarks
  (arXiv 2007.15779 §2.3.5) and BLUE's evaluation pools the sentences' labels per abstract the same way
  (ncbi-nlp/BLUE_Benchmark blue/hoc/eval_hoc.py @ 1babff1). An abstract with no hallmark keeps an empty set
  (BLURB keeps such abstracts). The item's text is the sentences joined with single spaces.
* Sentences (``.tsv``): BioGPT's ``sentence<TAB>labels`` (microsoft/BioGPT data/HoC/raw/train.tsv @ 648f7d6),
  the hallmarks in lower case joined by ``|``, or ``empty``.

Label order (both views): BLUE's HoC label list (eval_hoc.py ``LABELS``), the ten hallmarks alphabetically;
BLURB publishes none of its own.
"""

from __future__ import annotations

import os
import re

from megatron_biomed.data.tasks._fields import BadRecord, check_text, json_kind, record_uid, require_text, short
from megatron_biomed.data.tasks.errors import ReadReport
from megatron_biomed.data.tasks.records import MultiLabelItem
from megatron_biomed.data.tasks.source_files import Collector, first_line, iter_jsonl, iter_tsv

HOC_LABELS = (
    "activating invasion and metastasis", "avoiding immune destruction", "cellular energetics",
    "enabling replicative immortality", "evading growth suppressors", "genomic instability and mutation",
    "inducing angiogenesis", "resisting cell death", "sustaining proliferative signaling",
    "tumor promoting inflammation",
)  # fmt: skip
HOC_NO_LABEL = ("NULL", "empty")  # the raw corpus's and BioGPT's "no hallmark"
_AND = re.compile(r"\s*AND\s*")


def _hallmark(name: str) -> int:
    key = " ".join(name.split()).lower()
    if key not in HOC_LABELS:
        raise BadRecord("unknown hallmark", f"hallmark {short(name)} is not one of the ten: {', '.join(HOC_LABELS)}")
    return HOC_LABELS.index(key)


def document_labels(raw: str, num_sentences: int) -> tuple[int, ...]:
    """The hallmark ids of a raw HoC label file (module docstring) for a text of ``num_sentences`` sentences."""
    groups = raw.split("<")
    if groups[0].strip():
        raise BadRecord("bad labels", f"'labels' must open every sentence's group with '<'; the start "
                                      f"{short(groups[0])} is not opened")  # fmt: skip
    groups = groups[1:]
    if len(groups) != num_sentences:
        raise BadRecord("labels do not match sentences", f"'labels' has {len(groups)} sentence groups for "
                                                         f"{num_sentences} sentences of 'text'")  # fmt: skip
    found: set[int] = set()
    for group in groups:
        for path in _AND.split(group.strip()):
            top = path.split("--")[0].strip()
            if top and top not in HOC_NO_LABEL:
                found.add(_hallmark(top))
    return tuple(sorted(found))


def _document(row: dict, uid: str) -> MultiLabelItem:
    text = require_text(row, "text")
    if "labels" not in row:
        raise BadRecord("missing 'labels'")
    if not isinstance(row["labels"], str):
        raise BadRecord("bad labels", f"'labels' must be a string (the raw label file), got {json_kind(row['labels'])}")
    sentences = text.rstrip("\n").split("\n")
    labels = document_labels(row["labels"], len(sentences))
    return MultiLabelItem(text=" ".join(s.strip() for s in sentences if s.strip()), labels=labels,
                          label_names=HOC_LABELS, uid=record_uid(row, uid, key="pmid"))  # fmt: skip


def _sentence(fields: list[str], uid: str) -> MultiLabelItem:
    if len(fields) != 2:
        raise BadRecord("wrong number of columns", f"expected 2 tab-separated columns (sentence, labels), "
                                                   f"got {len(fields)}")  # fmt: skip
    sentence, raw = fields
    check_text(sentence, "sentence")
    names = [n.strip() for n in raw.split("|") if n.strip()]
    if not names:
        raise BadRecord("missing labels", "the labels column is empty (write 'empty' for no hallmark)")
    labels = tuple(_hallmark(n) for n in names if n not in HOC_NO_LABEL)
    return MultiLabelItem(text=sentence.strip(), labels=labels, label_names=HOC_LABELS, uid=uid)


def read_hoc(path: str | os.PathLike, *, skip_bad: bool = False,
             report: ReadReport | None = None) -> list[MultiLabelItem]:  # fmt: skip
    """HoC documents (``.jsonl``, or a file whose first line is a JSON object) or BioGPT's sentence TSV, as
    :class:`MultiLabelItem` over :data:`HOC_LABELS` (module docstring)."""
    col = Collector(path, skip_bad, report)
    documents = col.path.lower().endswith((".jsonl", ".jsonl.gz")) or first_line(col.path).lstrip().startswith("{")
    items = []
    rows = iter_jsonl(col) if documents else iter_tsv(col)
    for line, row in rows:
        try:
            uid = f"{col.path}:{line}"
            items.append(_document(row, uid) if documents else _sentence(row, uid))
        except BadRecord as e:
            col.bad_record(line, e)
            continue
        col.ok()
    return items
