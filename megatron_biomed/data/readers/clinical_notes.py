"""Clinical notes reader: CSV in MIMIC-IV-Note's layout and plain-text notes, one record per note.

* CSV (plain or gzip): a header naming at least :data:`NOTE_COLUMNS` (any order, any case; other columns such as
  MIMIC-IV-Note's ``note_seq`` and ``storetime`` are ignored), then one note per CSV record; ``text`` holds
  newlines inside quotes. Read record by record with the task readers' CSV plumbing
  (``data/tasks/source_files.py`` ``iter_csv``), so memory stays flat, and every problem names the line the record
  starts on. A record with the wrong number of fields or invalid UTF-8 is a :class:`BadRecord` (``--skip-bad``
  counts it as ``bad_record``); a missing header column, an unterminated quote or a truncated gzip stream
  breaks the file (:class:`BadInputError`).
* ``.txt``: one note per file, the whole file is the note (no separator convention: a note may hold any line,
  so there is no line a separator could be told from text by; write many notes as a CSV instead). A ``.txt``
  note has no ids (a file name is not an identity). Files over :data:`MAX_TXT_BYTES` are refused as not one note.

De-identification placeholders are replaced by one token (``--deid-token``, default :data:`DEID_TOKEN`) and
counted per note (``deid_placeholders``): MIMIC-III / PhysioNet deid's ``[** ... **]`` (e.g.
``[**Hospital 1**]``, ``[**2151-7-16**]``) and MIMIC-IV-Note's ``___``. An empty token keeps them as they are
(still counted).
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from megatron_biomed.data.readers.medline import BadRecord
from megatron_biomed.data.readers.registry import ReaderOptions, SourceReader
from megatron_biomed.data.readers.xmlstream import BadInputError
from megatron_biomed.data.tasks.errors import TaskDataError
from megatron_biomed.data.tasks.source_files import Collector, has_bad_bytes, iter_csv, open_text

NAME = "clinical_notes"
# MIMIC-IV-Note 2.2 note/discharge.csv and note/radiology.csv (physionet.org/content/mimic-iv-note/2.2): the
# columns both files share that a record keeps (note_seq and storetime are left out).
NOTE_COLUMNS = ("note_id", "subject_id", "hadm_id", "note_type", "charttime", "text")
CSV_SUFFIXES = (".csv", ".csv.gz")
TXT_SUFFIX = ".txt"
# our choice: the de-identification token; one bracketed word that no tokenizer merges with its neighbours
DEID_TOKEN = "[DEID]"
# MIMIC-III NOTEEVENTS / PhysioNet deid 1.1 output: "[**" category/date "**]" (README_deid-1.1 and its
# reference output GSoutput/*.res, e.g. [**Hospital 1**], [**2151-7-16**]); they never span lines.
# MIMIC-IV-Note: every removed identifier is exactly three underscores (physionet.org/content/mimic-iv-note/2.2,
# "De-identification"); longer runs are form blanks and stay.
PLACEHOLDER = re.compile(r"\[\*\*.*?\*\*\]|(?<!_)___(?!_)")
# our choice: the largest MIMIC-IV-Note discharge note is well under 1 MB; a bigger .txt is many notes
MAX_TXT_BYTES = 8 << 20


@dataclass
class ClinicalNoteRecord:
    """One note. ``text`` (placeholders replaced) is the training text; the ids are as the CSV has them."""

    note_id: str
    subject_id: str
    hadm_id: str
    note_type: str
    charttime: str
    text: str
    deid_placeholders: int  # placeholders replaced in this note
    source: str = NAME

    def to_dict(self) -> dict:
        return asdict(self)


def normalize_placeholders(text: str, token: str = DEID_TOKEN) -> tuple[str, int]:
    """``(text with every de-identification placeholder replaced by token, how many)``; an empty token keeps
    the placeholders and only counts them."""
    if not token:
        return text, sum(1 for _ in PLACEHOLDER.finditer(text))
    return PLACEHOLDER.subn(token.replace("\\", r"\\"), text)


def _header(path: Path, rows: Iterator[tuple[int, list[str]]]) -> tuple[dict[str, int], int]:
    try:
        line, header = next(rows)
    except StopIteration:
        raise BadInputError(path, 0, f"empty file; expected a CSV header with {', '.join(NOTE_COLUMNS)}") from None
    names = [h.strip().lower() for h in header]
    missing = [c for c in NOTE_COLUMNS if c not in names]
    if missing:
        raise BadInputError(path, line, f"CSV header lacks column(s) {', '.join(missing)}; a MIMIC-IV-Note "
                                        f"layout CSV needs {', '.join(NOTE_COLUMNS)} (any order)")  # fmt: skip
    return {c: names.index(c) for c in NOTE_COLUMNS}, len(names)


def iter_notes_csv(path: str | Path, token: str = DEID_TOKEN) -> Iterator[ClinicalNoteRecord | BadRecord]:
    """Stream the notes of one MIMIC-IV-Note-layout CSV (plain or gzip)."""
    path = Path(path)
    try:
        rows = iter_csv(Collector(path, skip_bad=False, report=None))
        col_of, ncols = _header(path, rows)
        for line, fields in rows:
            if len(fields) != ncols:
                yield BadRecord(line, f"expected {ncols} columns as in the header, got {len(fields)}")
                continue
            if has_bad_bytes(*fields):
                yield BadRecord(line, "record is not valid UTF-8")
                continue
            values = {c: fields[i] for c, i in col_of.items()}
            text, n = normalize_placeholders(values.pop("text").strip(), token)
            yield ClinicalNoteRecord(**{k: v.strip() for k, v in values.items()}, text=text, deid_placeholders=n)
    except TaskDataError as e:  # the CSV plumbing's fatal errors: a broken quote, a truncated gzip stream
        raise BadInputError(path, e.line or 0, e.reason or str(e)) from e


def iter_notes_txt(path: str | Path, token: str = DEID_TOKEN) -> Iterator[ClinicalNoteRecord | BadRecord]:
    """The note of one ``.txt`` file (the whole file)."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_TXT_BYTES:
        raise BadInputError(path, 0, f"{size} bytes is too large for one note (a .txt file is one note, at most "
                                     f"{MAX_TXT_BYTES} bytes); write many notes as a CSV with the columns "
                                     f"{', '.join(NOTE_COLUMNS)}")  # fmt: skip
    try:
        with open_text(path) as f:
            raw = f.read()
    except (TaskDataError, OSError, EOFError) as e:
        raise BadInputError(path, 0, f"cannot read ({e})") from e
    if has_bad_bytes(raw):
        yield BadRecord(1 + raw[: re.search("[\udc80-\udcff]", raw).start()].count("\n"), "note is not valid UTF-8")
        return
    text, n = normalize_placeholders(raw.strip(), token)
    yield ClinicalNoteRecord("", "", "", "", "", text, n)


def _header_names(path: Path) -> list[str]:
    with open_text(path, newline="") as f:
        first = f.readline()
    return [h.strip().lower() for h in next(csv.reader([first]), [])]


def sniff(path: Path) -> bool:
    """A ``.txt`` file, or a ``.csv``/``.csv.gz`` whose header has the note columns."""
    name = Path(path).name.lower()
    if name.endswith(TXT_SUFFIX):
        return True
    if not name.endswith(CSV_SUFFIXES):
        return False
    try:
        return set(NOTE_COLUMNS) <= set(_header_names(Path(path)))
    except (TaskDataError, OSError, EOFError, csv.Error, ValueError):
        return False


def note_key(record: dict) -> int | None:
    """A note's identity: a stable 63-bit hash of its ``note_id`` (None when it has none: ``.txt`` notes)."""
    note_id = record.get("note_id")
    if not note_id:
        return None
    digest = hashlib.blake2b(f"{NAME}:{note_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _read(path: Path, options: ReaderOptions) -> Iterator[ClinicalNoteRecord | BadRecord]:
    if path.name.lower().endswith(TXT_SUFFIX):
        return iter_notes_txt(path, options.deid_token)
    return iter_notes_csv(path, options.deid_token)


READER = SourceReader(
    name=NAME,
    description="clinical notes: MIMIC-IV-Note layout CSV (.csv/.csv.gz) and plain-text notes (.txt, one per file)",
    read=_read,
    # .txt is taken only when named (a file or a glob): download directories of other sources hold README.txt
    suffixes=CSV_SUFFIXES,
    sniff=sniff,
    record_key=note_key,
    duplicate_reason="duplicate_note_id",
)
