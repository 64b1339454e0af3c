"""Reader for clinical notes in MIMIC-IV-Note's ``discharge.csv`` layout (a header row, then one note per CSV
record; ``text`` holds newlines inside quotes). MIMIC needs credentialed access: any CSV with these columns
works (e.g. public notes converted to it), and every message names the file and the line a record starts on.
"""

from __future__ import annotations

import os
import re

import numpy as np

from megatron_biomed.data.tasks._fields import BadRecord
from megatron_biomed.data.tasks.errors import ReadReport
from megatron_biomed.data.tasks.records import ClinicalNote
from megatron_biomed.data.tasks.source_files import Collector, has_bad_bytes, iter_csv

# MIMIC-IV-Note 2.2 note/discharge.csv.gz, in its order (physionet.org/content/mimic-iv-note/2.2).
DISCHARGE_COLUMNS = ("note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text")
# LeoYML/BioMamba ft_biomamba/mimic_config.py @ e61db22: min_note_length = 200 (characters; shorter notes dropped).
MIN_NOTE_CHARS = 200


def _note(fields: list[str], col_of: dict[str, int], ncols: int) -> ClinicalNote:
    if len(fields) != ncols:
        raise BadRecord("wrong number of columns", f"expected {ncols} columns as in the header, got {len(fields)}")
    if has_bad_bytes(*fields):
        raise BadRecord("invalid UTF-8", "record is not valid UTF-8")
    values = {name: fields[i] for name, i in col_of.items()}
    if not values["subject_id"].strip():
        raise BadRecord("empty subject_id", "subject_id is empty (notes are split by patient)")
    return ClinicalNote(**values)


def read_discharge_notes(path: str | os.PathLike, *, skip_bad: bool = False, report: ReadReport | None = None,
                         min_chars: int = MIN_NOTE_CHARS) -> list[ClinicalNote]:  # fmt: skip
    """Notes of a CSV (plain or gzip) whose header names at least :data:`DISCHARGE_COLUMNS` (in any order, other
    columns ignored). A record with the wrong number of fields, invalid UTF-8 or an empty ``subject_id`` is bad:
    an error naming its line, or with ``skip_bad`` counted in ``report`` by reason. A note of fewer than
    ``min_chars`` characters (an empty one included) is left out, counted, not an error: BioMamba drops them. A
    missing column or a broken quote ends the read."""
    col = Collector(path, skip_bad, report)
    rows = iter_csv(col)
    try:
        line, header = next(rows)
    except StopIteration:
        raise col.fatal(None, f"empty file; expected a header with {', '.join(DISCHARGE_COLUMNS)}") from None
    names = [h.strip() for h in header]
    missing = [c for c in DISCHARGE_COLUMNS if c not in names]
    if missing:
        raise col.fatal(line, f"header lacks column(s) {', '.join(missing)}; MIMIC-IV-Note discharge.csv has "
                              f"{', '.join(DISCHARGE_COLUMNS)}")  # fmt: skip
    col_of = {c: names.index(c) for c in DISCHARGE_COLUMNS}
    notes = []
    for line, fields in rows:
        try:
            note = _note(fields, col_of, len(names))
        except BadRecord as e:
            col.bad_record(line, e)
            continue
        if len(note.text) < min_chars:
            col.not_requested(f"note under {min_chars} characters")
            continue
        notes.append(note)
        col.ok()
    return notes


# ---- what BioMamba's clinical evaluation does with the notes (LeoYML/BioMamba ft_biomamba/mimic_data.py @ e61db22)

# Section headers, in their order (``SECTION_HEADERS``); matched case-insensitively at a line start.
SECTION_HEADERS = (
    r"CHIEF COMPLAINT",
    r"HISTORY OF (?:PRESENT |THE PRESENT )?ILLNESS",
    r"(?:PAST )?MEDICAL HISTORY",
    r"(?:ADMISSION |HOME )?MEDICATIONS?",
    r"ALLERGIES",
    r"SOCIAL HISTORY",
    r"FAMILY HISTORY",
    r"PHYSICAL EXAM(?:INATION)?",
    r"(?:PERTINENT )?(?:LABORATORY |LAB )?(?:RESULTS|DATA|FINDINGS)",
    r"(?:HOSPITAL )?COURSE",
    r"ASSESSMENT (?:AND|&) PLAN",
    r"DISCHARGE DIAGNOSIS",
    r"DISCHARGE (?:CONDITION|STATUS)",
    r"DISCHARGE INSTRUCTIONS",
    r"DISCHARGE MEDICATIONS?",
    r"FOLLOW(?:\s*-?\s*)UP",
    r"IMPRESSION",
    r"FINDINGS?",
    r"TECHNIQUE",
    r"INDICATION",
    r"COMPARISON",
    r"CONCLUSION",
)
SECTION_RE = re.compile(r"(?:^|\n)\s*(?:" + "|".join(SECTION_HEADERS) + r")\s*[:\-]?\s*\n?", re.IGNORECASE)
# ``prepare_discharge_data``: the sections that are the admission (the prompt's context) and the discharge
# (the reference to generate); other sections are dropped.
ADMISSION_SECTIONS = frozenset({
    "CHIEF COMPLAINT", "HISTORY OF PRESENT ILLNESS", "HISTORY OF THE PRESENT ILLNESS", "PAST MEDICAL HISTORY",
    "MEDICAL HISTORY", "MEDICATIONS", "ADMISSION MEDICATIONS", "ALLERGIES", "SOCIAL HISTORY", "FAMILY HISTORY",
    "PHYSICAL EXAMINATION", "PHYSICAL EXAM", "LABORATORY RESULTS", "LAB RESULTS", "PERTINENT RESULTS", "PREAMBLE",
})  # fmt: skip
DISCHARGE_SECTIONS = frozenset({
    "HOSPITAL COURSE", "ASSESSMENT AND PLAN", "ASSESSMENT & PLAN", "DISCHARGE DIAGNOSIS", "DISCHARGE MEDICATIONS",
    "DISCHARGE INSTRUCTIONS", "DISCHARGE CONDITION", "FOLLOW UP", "FOLLOW-UP",
})  # fmt: skip


def note_sections(text: str) -> dict[str, str]:
    """``{HEADER: content}`` in order (``parse_note_sections``): the header as matched, stripped of ":"/"-" and
    upper-cased; text before the first header is "PREAMBLE"; empty sections are dropped (a repeated header keeps
    its last content); a note without headers is ``{"FULL_TEXT": text}``."""
    matches = list(SECTION_RE.finditer(text))
    if not matches:
        return {"FULL_TEXT": text.strip()}
    sections = {}
    for i, m in enumerate(matches):
        header = m.group().strip().rstrip(":-").strip().upper()
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        content = text[m.end() : end].strip()
        if content:
            sections[header] = content
    preamble = text[: matches[0].start()].strip()
    return {"PREAMBLE": preamble, **sections} if preamble else sections


def admission_and_discharge(text: str) -> tuple[str, str] | None:
    """(admission sections, discharge sections) of a note, each "HEADER:\\ncontent" blocks joined by a blank
    line, or None when either is missing (``prepare_discharge_data``)."""
    context, reference = [], []
    for header, content in note_sections(text).items():
        if header in ADMISSION_SECTIONS:
            context.append(f"{header}:\n{content}")
        elif header in DISCHARGE_SECTIONS:
            reference.append(f"{header}:\n{content}")
    if not context or not reference:
        return None
    return "\n\n".join(context), "\n\n".join(reference)


def heldout_patients(notes: list[ClinicalNote], fraction: float = 0.1, seed: int = 42) -> list[ClinicalNote]:
    """The notes of ``fraction`` of the patients (``split_mimic_data``: the distinct subject_ids in order of first
    appearance, shuffled by ``np.random.RandomState(seed)``, the first max(1, int(n * fraction)) held out)."""
    subjects = np.array(list(dict.fromkeys(n.subject_id for n in notes)), dtype=object)
    np.random.RandomState(seed).shuffle(subjects)
    held = set(subjects[: max(1, int(len(subjects) * fraction))])
    return [n for n in notes if n.subject_id in held]


def sample_notes(notes: list, max_samples: int | None, seed: int = 42) -> list:
    """At most ``max_samples`` notes (``np.random.RandomState(seed).choice`` without replacement, in the drawn
    order), all of them in file order when there are not more."""
    if not max_samples or max_samples >= len(notes):
        return list(notes)
    return [notes[i] for i in np.random.RandomState(seed).choice(len(notes), max_samples, replace=False)]
