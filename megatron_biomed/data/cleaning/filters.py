"""Per-record filters: decide from one record alone whether it is training text.

Cross-record decisions (versions, deletions, duplicates) are in ``reconcile.py`` and
``dedup.py``. Filters run in a fixed order and a dropped record is counted under the first
reason that applies: the literature filters below for MEDLINE and PMC records, then the filters a source
registers in :data:`SOURCE_FILTERS` (one entry per reader name, each a tuple of ``(reason, drops)`` pairs, where
``drops(record, cfg)`` is True when the record must go), then the length filter for every source.
A source may also register checks in :data:`SOURCE_FLAGS` that keep a record but count it under a reason (the
report's ``flagged``), e.g. the clinical notes' PHI audit.
"""

from __future__ import annotations

from collections.abc import Callable

from megatron_biomed.data.cleaning import filters_clinical_notes, filters_ctgov, filters_uspto
from megatron_biomed.data.cleaning.config import CleaningConfig

# MEDLINE uses ISO 639-2 (eng, fre, ger); JATS xml:lang uses ISO 639-1 (en, fr, de).
_ISO1_TO_ISO2 = {
    "en": "eng", "fr": "fre", "de": "ger", "es": "spa", "it": "ita", "pt": "por", "ru": "rus",
    "ja": "jpn", "zh": "chi", "nl": "dut", "pl": "pol", "ko": "kor", "tr": "tur", "cs": "cze",
    "sv": "swe", "da": "dan", "no": "nor", "fi": "fin", "hu": "hun", "el": "gre",
}
RETRACTION_TYPES = frozenset({"retracted publication", "retraction of publication", "retraction"})

# Reason names as they appear in the report, in the order the filters run.
REASONS = ("retracted", "non_english", "no_abstract", "too_short", "noncommercial_license")
LITERATURE_SOURCES = ("medline", "pmc")

Filter = tuple[str, Callable[[dict, CleaningConfig], bool]]
# reader name -> its own filters, run after the literature filters and before the length filter
SOURCE_FILTERS: dict[str, tuple[Filter, ...]] = {
    "clinical_notes": filters_clinical_notes.FILTERS,
    "ctgov": filters_ctgov.FILTERS,
    "uspto": filters_uspto.FILTERS,
}
# reader name -> checks that keep a record but count it (the report's `flagged`), each ``(reason, flags)`` with
# ``flags(record, cfg)`` True when the record is to be counted under ``reason``; asked of records the filters kept
SOURCE_FLAGS: dict[str, tuple[Filter, ...]] = {
    "clinical_notes": filters_clinical_notes.FLAGS,
}


def normalize_language(code: str) -> str:
    code = code.strip().lower().split("-")[0]
    return _ISO1_TO_ISO2.get(code, code)


def word_count_below(text: str, n: int) -> bool:
    """``len(text.split()) < n`` without splitting a whole article: ``split(None, n)`` stops after n
    words and returns min(words, n + 1) pieces (the last one the unsplit rest)."""
    return len(text.split(None, n)) < n


def filter_reason(record: dict, cfg: CleaningConfig) -> str | None:
    """Name of the first filter that drops ``record`` (a reader record as a dict), else None."""
    source = record.get("source")
    literature = source in LITERATURE_SOURCES
    if literature and cfg.drop_retracted:
        types = {t.lower() for t in record.get("publication_types") or ()}
        if types & RETRACTION_TYPES:
            return "retracted"
    if cfg.languages:
        langs = {normalize_language(x) for x in record.get("language") or ()}
        # a record that states no language is kept: there is nothing to judge it by
        if langs and not langs & {normalize_language(x) for x in cfg.languages}:
            return "non_english"
    if (literature and cfg.drop_no_abstract and not record.get("abstract") and not record.get("sections")
            and not record.get("body")):
        return "no_abstract"
    for reason, drops in SOURCE_FILTERS.get(source, ()):
        if drops(record, cfg):
            return reason
    if cfg.min_words and word_count_below(record.get("text") or "", cfg.min_words):
        return "too_short"
    if cfg.commercial_only and source == "pmc" and record.get("commercial_use") is not True:
        return "noncommercial_license"
    return None


def flag_reasons(record: dict, cfg: CleaningConfig) -> list[str]:
    """The reasons a kept record is counted under in the report's ``flagged`` (its source's flag checks)."""
    return [reason for reason, flags in SOURCE_FLAGS.get(record.get("source"), ()) if flags(record, cfg)]
