"""Reader for question summarisation data: MeQSum (``chq`` -> ``summary``, abachaa/MeQSum @ 51e36cf converted
to JSONL) and MEDIQA-QS 2021 (``question`` -> ``summary``, abachaa/MEDIQA2021 @ 8d7fe20 Task1 validation)."""

from __future__ import annotations

import os

from megatron_biomed.data.tasks._fields import BadRecord, record_uid, require_text
from megatron_biomed.data.tasks.errors import ReadReport
from megatron_biomed.data.tasks.records import SummaryItem
from megatron_biomed.data.tasks.source_files import Collector, iter_jsonl

# The source text's key in each layout, tried in this order: MeQSum's consumer health question, MEDIQA-QS's.
SOURCE_KEYS = ("chq", "question")
UID_KEYS = ("file", "q_id", "id")


def _summary_item(row: dict, default_uid: str) -> SummaryItem:
    key = next((k for k in SOURCE_KEYS if k in row), None)
    if key is None:
        raise BadRecord("no 'chq' or 'question'", "row has neither 'chq' (MeQSum) nor 'question' (MEDIQA-QS)")
    source, summary = require_text(row, key), require_text(row, "summary")
    uid = default_uid
    for k in UID_KEYS:
        if row.get(k) is not None:
            uid = record_uid(row, default_uid, key=k)
            break
    return SummaryItem(source=source, summary=summary, uid=uid)


def read_meqsum(path: str | os.PathLike, *, skip_bad: bool = False,
                report: ReadReport | None = None) -> list[SummaryItem]:  # fmt: skip
    """MeQSum / MEDIQA-QS JSONL: one ``{"chq" or "question", "summary"}`` object per line; the id is ``file``,
    ``q_id`` or ``id`` when present, else ``path:line``."""
    col = Collector(path, skip_bad, report)
    items = []
    for line, row in iter_jsonl(col):
        try:
            items.append(_summary_item(row, f"{col.path}:{line}"))
        except BadRecord as e:
            col.bad_record(line, e)
            continue
        col.ok()
    return items
