"""Already-extracted records, one JSON object per line (``tools/pubmed_to_jsonl.py`` output, the shared PubMed JSONL).

A line is one record; its ``text`` is the training text. A line without ``text`` but with ``title``/``abstract`` (the
shared PubMed abstracts) gets ``title + "\\n" + abstract``, the text a MEDLINE record has (readers/medline.py
``MedlineRecord``). The other fields are kept as they are. ``source`` stays what the line says when that names a
registered reader (so a ``medline`` line keeps MEDLINE's record key, filters and version rule); any other value is
kept under ``origin`` and the record's source becomes ``jsonl``. Plain or ``.gz``; streamed line by line.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from megatron_biomed.data.readers.medline import BadRecord
from megatron_biomed.data.readers.registry import READERS, ReaderOptions, SourceReader

NAME = "jsonl"
SUFFIXES = (".jsonl", ".jsonl.gz")  # what a directory given to --input contributes
SNIFFED = (*SUFFIXES, ".json")  # a single .json file may be JSON lines too; sniff looks inside
# ClinicalTrials.gov API v2 data model: a study's top-level object; such files belong to the ctgov reader
CTGOV_TOP_LEVEL = "protocolSection"


@dataclass
class JsonlRecord:
    text: str
    source: str
    fields: dict = field(default_factory=dict)  # every other field of the line, as read

    def to_dict(self) -> dict:
        return {**self.fields, "text": self.text, "source": self.source}


def _open(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else open(path, encoding="utf-8")


def record_text(obj: dict) -> str | None:
    """``text``, else ``title`` + newline + ``abstract`` as a MEDLINE record has it; None when neither is a string."""
    text = obj.get("text")
    if isinstance(text, str):
        return text
    title, abstract = obj.get("title"), obj.get("abstract")
    if not isinstance(title, str) and not isinstance(abstract, str):
        return None
    title = title if isinstance(title, str) else ""
    return title + "\n" + abstract if isinstance(abstract, str) and abstract else title


def to_record(obj: dict) -> JsonlRecord | str:
    """The record of one parsed line, or the problem (a string) when it has no text."""
    text = record_text(obj)
    if text is None:
        return "no 'text' field (nor 'title'/'abstract')"
    rest = {k: v for k, v in obj.items() if k not in ("text", "source")}
    source = obj.get("source")
    if not (isinstance(source, str) and source in READERS):
        if source is not None:
            rest["origin"] = source
        source = NAME
    return JsonlRecord(text=text, source=source, fields=rest)


def iter_jsonl(path: str | Path) -> Iterator[JsonlRecord | BadRecord]:
    path = Path(path)
    with _open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                yield BadRecord(line_no, f"not valid JSON: {e}")
                continue
            if not isinstance(obj, dict):
                yield BadRecord(line_no, f"a JSON {type(obj).__name__}, not an object")
                continue
            rec = to_record(obj)
            yield BadRecord(line_no, rec) if isinstance(rec, str) else rec


def sniff(path: Path) -> bool:
    """A ``.jsonl``/``.jsonl.gz``/``.json`` file whose first line is a JSON object with text and no ClinicalTrials.gov
    ``protocolSection``."""
    if not path.name.endswith(SNIFFED):
        return False
    try:
        with _open(path) as f:
            first = f.readline(1 << 24)
        obj = json.loads(first)
    except (OSError, ValueError, EOFError):
        return False
    return isinstance(obj, dict) and CTGOV_TOP_LEVEL not in obj and record_text(obj) is not None


def record_key(record: dict) -> int | None:
    """A line's ``pmid`` (else ``id``) as a stable 63-bit hash; None when it has neither."""
    ident = record.get("pmid") if record.get("pmid") is not None else record.get("id")
    if ident is None:
        return None
    digest = hashlib.blake2b(f"jsonl:{ident}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _read(path: Path, options: ReaderOptions) -> Iterator[JsonlRecord | BadRecord]:
    return iter_jsonl(path)


READER = SourceReader(
    name=NAME,
    description="already-extracted records, one JSON object with a 'text' field per line (.jsonl, .jsonl.gz)",
    read=_read,
    suffixes=SUFFIXES,
    sniff=sniff,
    record_key=record_key,
)
