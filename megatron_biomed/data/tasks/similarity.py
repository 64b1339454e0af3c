"""Reader for sentence similarity: BIOSSES pairs in their original TSV columns.

``sentence_id<TAB>sentence_1<TAB>sentence_2<TAB>annotator_a .. annotator_e`` with a header line; each annotator
scores the pair 0 (unrelated) to 4 (equivalent), and the gold score is their mean (Soğancıoğlu et al. 2017;
bigscience-workshop/biomedical bigbio/hub/hub_repos/biosses/biosses.py @ 9133277 builds the BLUE/BLURB split
from these columns and takes the same mean). Each row becomes a :class:`SentencePairItem`.
"""

from __future__ import annotations

import math
import os

from megatron_biomed.data.tasks._fields import BadRecord, check_text, short
from megatron_biomed.data.tasks.errors import ReadReport
from megatron_biomed.data.tasks.records import SentencePairItem
from megatron_biomed.data.tasks.source_files import Collector, iter_tsv

BIOSSES_COLUMNS = ("sentence_id", "sentence_1", "sentence_2", "annotator_a", "annotator_b", "annotator_c",
                   "annotator_d", "annotator_e")  # fmt: skip
BIOSSES_RANGE = (0.0, 4.0)


def _score(value: str, column: str) -> float:
    try:
        score = float(value)
    except ValueError:
        raise BadRecord("bad score", f"{column} {short(value)} is not a number") from None
    lo, hi = BIOSSES_RANGE
    if not math.isfinite(score) or not lo <= score <= hi:
        raise BadRecord("score out of range", f"{column} {short(value)} is not in {lo:g}..{hi:g}")
    return score


def _biosses_item(fields: list[str], uid: str) -> SentencePairItem:
    if len(fields) != len(BIOSSES_COLUMNS):
        raise BadRecord("wrong number of columns", f"expected {len(BIOSSES_COLUMNS)} tab-separated columns "
                                                   f"({', '.join(BIOSSES_COLUMNS)}), got {len(fields)}")  # fmt: skip
    pair_id, s1, s2, *scores = fields
    check_text(s1, "sentence_1")
    check_text(s2, "sentence_2")
    annotations = tuple(_score(v, c) for v, c in zip(scores, BIOSSES_COLUMNS[3:], strict=True))
    return SentencePairItem(sentence1=s1.strip(), sentence2=s2.strip(), score=sum(annotations) / len(annotations),
                            uid=pair_id.strip() or uid, annotations=annotations)  # fmt: skip


def read_biosses(path: str | os.PathLike, *, skip_bad: bool = False,
                 report: ReadReport | None = None) -> list[SentencePairItem]:  # fmt: skip
    """BIOSSES pairs (module docstring); the header line must come first and name the columns
    :data:`BIOSSES_COLUMNS`. ``score`` = the mean of the five annotators, ``uid`` = ``sentence_id``."""
    col = Collector(path, skip_bad, report)
    items: list[SentencePairItem] = []
    header = False
    for line, fields in iter_tsv(col):
        if not header:
            if tuple(f.strip() for f in fields) != BIOSSES_COLUMNS:
                raise col.fatal(line, f"expected the header line {' '.join(BIOSSES_COLUMNS)} (tab-separated), "
                                      f"got {short(chr(9).join(fields))}")  # fmt: skip
            header = True
            continue
        try:
            items.append(_biosses_item(fields, f"{col.path}:{line}"))
        except BadRecord as e:
            col.bad_record(line, e)
            continue
        col.ok()
    return items
