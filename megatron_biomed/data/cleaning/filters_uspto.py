"""Cleaning filters for USPTO patent records (reader ``uspto``), registered in ``filters.SOURCE_FILTERS``.

Reasons, in the order they run:

- ``patent_design``: a design patent (kind code S, WIPO ST.16), whose text is a title, a figure list and one
  claim; kept with ``--patent-designs`` (``CleaningConfig.patent_designs``). Our choice: little text, and none of it
  biomedical language.
- ``patent_class``: none of the document's IPC or CPC symbols starts with a prefix in ``--patent-classes``
  (``CleaningConfig.patent_classes``, e.g. ``A61K,A61P,C07,C12``; empty keeps every class). A document without any
  IPC/CPC symbol (design patents have a Locarno class only) never matches a non-empty list.
"""

from __future__ import annotations

from megatron_biomed.data.cleaning.config import CleaningConfig


def normalize_class(symbol: str) -> str:
    """``"A61K 31/00"`` -> ``"A61K31/00"``: prefixes and symbols compare without spaces, upper case."""
    return "".join(symbol.split()).upper()


def design_patent(record: dict, cfg: CleaningConfig) -> bool:
    return not cfg.patent_designs and str(record.get("kind") or "").upper().startswith("S")


def class_mismatch(record: dict, cfg: CleaningConfig) -> bool:
    if not cfg.patent_classes:
        return False
    prefixes = tuple(normalize_class(p) for p in cfg.patent_classes)
    symbols = [normalize_class(s) for s in (record.get("ipc") or []) + (record.get("cpc") or [])]
    return not any(s.startswith(prefixes) for s in symbols)


FILTERS = (
    ("patent_design", design_patent),
    ("patent_class", class_mismatch),
)
