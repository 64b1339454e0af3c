"""The source-reader seam: every raw corpus the cleaning pipeline reads is one :class:`SourceReader`, registered
once in :data:`READERS` below.

A reader streams one input file and yields records (dataclasses with ``to_dict()`` whose ``text`` is training text
and whose ``source`` is the reader's name), :class:`~megatron_biomed.data.readers.medline.BadRecord` for a record
it cannot read, and, for sources that retract records (MEDLINE update files), deletion events. Broken files raise
:class:`~megatron_biomed.data.readers.xmlstream.BadInputError` naming the file and line. ``record_key`` gives the
identity the pipeline keeps one record per (a PMID, an NCT id, a patent family); ``--format`` takes any name here,
and ``auto`` asks each reader's ``sniff`` and then the XML root element.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from megatron_biomed.errors import BiomedError
from megatron_biomed.registry import Registry


class UnknownFormatError(BiomedError, ValueError):
    """An input format name that no reader is registered under."""


@dataclass(frozen=True)
class ReaderOptions:
    """Options a reader may honour; field names match the ``tools/pubmed_to_jsonl.py`` flags."""

    keep_captions: bool = False  # PMC: keep figure and table captions in the body text
    # clinical notes: the token de-identification placeholders ([** ... **], ___) become; "" keeps them
    # (readers/clinical_notes.py DEID_TOKEN; our choice)
    deid_token: str = "[DEID]"


@dataclass(frozen=True)
class SourceReader:
    name: str  # the --format value and each record's "source"
    description: str
    read: Callable[[Path, ReaderOptions], Iterator]
    suffixes: tuple[str, ...]  # file endings a directory given to --input contributes
    roots: tuple[str, ...] = ()  # XML root elements `--format auto` recognises
    # a cheap look at the file (its name, first bytes) for inputs that are not told apart by an XML root element;
    # asked before root elements are read, so it must be False for any other reader's files
    sniff: Callable[[Path], bool] | None = None
    # the integer identity reconcile keeps one record per (None: the record takes part in no version bookkeeping)
    record_key: Callable[[dict], int | None] | None = None
    # orders copies of one key (higher wins; equal: the later file wins), e.g. a last-update date as YYYYMMDD;
    # None: every copy ranks the same, so the last one read wins
    record_rank: Callable[[dict], int] | None = None
    duplicate_reason: str = "duplicate_id"  # the report's name for a copy retired by a newer one


READERS: Registry[SourceReader] = Registry(
    "input format",
    {
        "medline": "megatron_biomed.data.readers.medline:READER",
        "pmc": "megatron_biomed.data.readers.pmc:READER",
        "clinical_notes": "megatron_biomed.data.readers.clinical_notes:READER",
        "ctgov": "megatron_biomed.data.readers.ctgov:READER",
        "uspto": "megatron_biomed.data.readers.uspto:READER",
        "jsonl": "megatron_biomed.data.readers.jsonl:READER",
    },
    error=UnknownFormatError,
    plural="formats",
    hint="pass --format with one of them, or register a SourceReader in megatron_biomed/data/readers/registry.py",
)


def get_reader(name: str) -> SourceReader:
    return READERS.get(name)


def input_suffixes() -> tuple[str, ...]:
    """Every file ending some reader takes (what a directory given to ``--input`` is searched for)."""
    out: list[str] = []
    for _name, reader in READERS.items():
        out += [s for s in reader.suffixes if s not in out]
    return tuple(out)
