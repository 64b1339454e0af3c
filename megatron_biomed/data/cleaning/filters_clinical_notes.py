"""The PHI audit of clinical notes: patterns that look like identifiers still in a de-identified note.

Which kinds: the HIPAA Safe Harbor identifiers a pattern can find (45 CFR 164.514(b)(2)(i): (B) dates, (D)
telephone numbers, (F) e-mail addresses, (G) Social Security numbers, (H) medical record numbers, (N) URLs);
names and places need dictionaries and are not audited. The patterns are our choice, written against the
PhysioNet deid gold corpus's ``Phone`` and ``Date`` spans (measured recall in
``tests/data/test_readers_clinical_notes.py``). ``CleaningConfig.phi_audit`` (``--phi-audit``): ``drop`` drops a
note under ``phi_<kind>`` (the first kind found, in :data:`KINDS` order), ``flag`` keeps it and counts it under each
kind found (the report's ``flagged``), ``off`` looks for nothing. Only counts leave this module: the matched text
is never returned, logged or written.
"""

from __future__ import annotations

import re
from functools import partial

from megatron_biomed.data.cleaning.config import CleaningConfig

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MON = r"(?:0?[1-9]|1[0-2])"
_YEAR = r"(?:1[89]\d\d|2[01]\d\d)"  # MIMIC shifts dates into 2100-2200

# kind -> pattern; the reason is "phi_" + kind. All our choice (see the module docstring).
PATTERNS: dict[str, re.Pattern] = {
    # NANP numbers: 3-3-4 digits with any of ( ) - . / space between groups ("(201-223-4567)", "201/324/1423",
    # "212- 476- 8356", "410 392 0780"), and after a keyword a local 3-4 number or a pager/extension of 4-6 digits
    # (the deid corpus's "Pager #54321", "PG 33445", "beeper number 55037"). A bare 3-4 number is not looked for:
    # in nursing notes it is nearly always a range ("VT 900-1000", "SVR 882-1326")
    "phone": re.compile(
        r"(?<![\w/.])(?<!\d-)\(?\d{3}\)?[ ./-]{0,2}\d{3}[ ./-]{0,2}\d{4}(?![\w/%-])"
        r"|\b(?:pager|pgr|pg|beeper|ext|extension|tel|telephone|phone|cell|fax)\b[\s#:.-]*"
        r"(?:number|no\.?|num)?[\s#:.-]*(?:\d{3}-\d{4}|\d{4,6})\b",
        re.IGNORECASE,
    ),
    # local@domain.tld
    "email": re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}\b", re.IGNORECASE),
    # SSA's printed form AAA-GG-SSSS (ssa.gov/history/ssn/geocard.html)
    "ssn": re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])"),
    # a number of 5+ digits after a record-number keyword (MRN, MR#, "medical record number", "unit no", "acct")
    "mrn": re.compile(
        r"\b(?:mrn|mr\s*#|med(?:ical)?\s+rec(?:ord)?\s*(?:number|no\.?|num|#)|unit\s*(?:no\.?|number|#)"
        r"|acct|account\s*(?:number|no\.?|#))\s*[#:.]?\s*#?\d{5,}",
        re.IGNORECASE,
    ),
    # full dates (with a year): m/d/yy(yy), m-d-yy(yy), yyyy-mm-dd, "July 22, 1997", "28 Oct, 88"; not before
    # "%" (ventilator settings "10/5/40%")
    "date": re.compile(
        rf"(?<![\w/.])(?<!\d-){_MON}([/-]){_DAY}\1(?:{_YEAR}|\d{{2}})(?![\w/%-])"
        rf"|(?<![\w/.])(?<!\d-){_YEAR}-{_MON}-{_DAY}(?![\w/%-])"
        rf"|\b{_MONTH}\s+{_DAY}(?:st|nd|rd|th)?,?\s+(?:{_YEAR}|'?\d{{2}})\b"
        rf"|\b{_DAY}(?:st|nd|rd|th)?\s+{_MONTH},?\s+(?:{_YEAR}|'?\d{{2}})\b",
        re.IGNORECASE,
    ),
    "url": re.compile(r"\b(?:https?://|www\.)[^\s<>\"]+", re.IGNORECASE),
}
KINDS = tuple(PATTERNS)
REASONS = tuple(f"phi_{k}" for k in KINDS)


def phi_kinds(text: str) -> list[str]:
    """The kinds of identifier-like pattern found in ``text`` (never the matches)."""
    return [kind for kind, pattern in PATTERNS.items() if pattern.search(text)]


def _found(kind: str, mode: str, record: dict, cfg: CleaningConfig) -> bool:
    return cfg.phi_audit == mode and PATTERNS[kind].search(record.get("text") or "") is not None


# filters.SOURCE_FILTERS["clinical_notes"] and filters.SOURCE_FLAGS["clinical_notes"]
FILTERS = tuple((f"phi_{kind}", partial(_found, kind, "drop")) for kind in KINDS)
FLAGS = tuple((f"phi_{kind}", partial(_found, kind, "flag")) for kind in KINDS)
