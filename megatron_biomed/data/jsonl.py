"""Robust JSONL reading: every bad record is reported with its file, line and problem.

A record is bad when its line is not valid UTF-8, is not valid JSON, is not a JSON object, lacks
one of the requested keys, holds a non-string or empty value there, or is longer than
``max_document_bytes``. With ``skip_bad`` such records are skipped and counted in a
:class:`BadRecordReport`; otherwise the first one raises :class:`BadRecordError`.

Files can be read in byte ranges (aligned to line starts) so that parallel workers each take a
contiguous chunk; :func:`plan_chunks` cuts a list of files into such ranges.
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
_READ_BLOCK = 1 << 20


class BadRecordError(ValueError):
    """A JSONL record that cannot be used; the message names the file, line and problem."""

    def __init__(self, path: str | os.PathLike, line: int | None, problem: str,
                 byte_offset: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        self.byte_offset = byte_offset
        where = f"{self.path}:{line}" if line is not None else f"{self.path} (byte {byte_offset})"
        super().__init__(f"{where}: {problem} (pass --skip-bad to skip and count such records)")


@dataclass
class JsonlReadConfig:
    """How records are read and validated."""

    json_keys: tuple[str, ...] = ("text",)
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES
    skip_bad: bool = False


@dataclass
class BadRecordReport:
    """Counts of skipped records per problem kind, with the first few locations as examples."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 20

    def add(self, kind: str, path: str | os.PathLike, line: int | None, problem: str) -> None:
        self.counts[kind] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(f"{path}:{line if line is not None else '?'}: {problem}")

    def merge(self, other: BadRecordReport) -> None:
        self.counts.update(other.counts)
        room = self.max_examples - len(self.examples)
        self.examples.extend(other.examples[:max(room, 0)])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.total:
            return "no bad records"
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.counts.items()))
        return f"skipped {self.total} bad records ({kinds})"


def expand_inputs(specs: str | os.PathLike | Sequence[str | os.PathLike],
                  suffixes: tuple[str, ...] = (".jsonl", ".json")) -> list[Path]:
    """Resolve files, globs and directories (their ``*.jsonl``/``*.json`` files) to a sorted,
    de-duplicated list of files; raise FileNotFoundError naming any spec that matches nothing."""
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    out: list[Path] = []
    for spec in specs:
        s = str(spec)
        p = Path(s)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.name.endswith(suffixes))
        elif p.is_file():
            found = [p]
        else:
            found = sorted(Path(q) for q in glob.glob(s) if Path(q).is_file())
        if not found:
            raise FileNotFoundError(f"--input {s!r}: no such file, and no input files match it")
        out.extend(found)
    seen: set[Path] = set()
    unique = []
    for p in out:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique


@dataclass(frozen=True)
class FileRange:
    """Bytes ``[start, end)`` of ``path``; ``start`` is 0 or just after a newline."""

    path: str
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def _next_line_start(f, offset: int, size: int) -> int:
    """Smallest line start >= offset (file size if none)."""
    if offset <= 0:
        return 0
    f.seek(offset - 1)
    while True:
        block = f.read(_READ_BLOCK)
        if not block:
            return size
        i = block.find(b"\n")
        if i >= 0:
            return min(f.tell() - len(block) + i + 1, size)


def plan_chunks(paths: Sequence[str | os.PathLike], n_chunks: int) -> list[list[FileRange]]:
    """Cut the concatenation of ``paths`` into ``n_chunks`` contiguous pieces of about equal
    bytes, each a list of line-aligned :class:`FileRange`. Concatenating the pieces in order
    gives every line of every file exactly once, in order."""
    sizes = [os.path.getsize(p) for p in paths]
    total = sum(sizes)
    n_chunks = max(1, n_chunks)
    # global byte cut points, then each snapped forward to a line start inside its file
    cuts = [total * k // n_chunks for k in range(1, n_chunks)]
    chunks: list[list[FileRange]] = [[] for _ in range(n_chunks)]
    base = 0
    for path, size in zip(paths, sizes):
        # a byte belongs to the chunk numbered by how many cuts lie at or before it
        local = [c - base for c in cuts if base < c < base + size]
        chunk_of_start = sum(1 for c in cuts if c <= base)
        with open(path, "rb") as f:
            bounds = [0] + [_next_line_start(f, c, size) for c in local] + [size]
        for i in range(len(bounds) - 1):
            if bounds[i + 1] > bounds[i]:
                chunks[chunk_of_start + i].append(FileRange(str(path), bounds[i], bounds[i + 1]))
        base += size
    return chunks


def line_number_at(path: str | os.PathLike, offset: int) -> int:
    """1-based number of the line that starts at byte ``offset``."""
    count = 0
    with open(path, "rb") as f:
        remaining = offset
        while remaining > 0:
            block = f.read(min(_READ_BLOCK, remaining))
            if not block:
                break
            count += block.count(b"\n")
            remaining -= len(block)
    return count + 1


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _problem_of(line: bytes, config: JsonlReadConfig) -> tuple[str, str, list[str] | None]:
    """Parse one line: ``("", "", texts)`` when good, else ``(kind, problem, None)``."""
    try:
        s = line.decode("utf-8")
    except UnicodeDecodeError as e:
        return "not_utf8", f"not valid UTF-8 (byte 0x{line[e.start]:02x} at column {e.start + 1})", None
    try:
        obj = json.loads(s)
    except json.JSONDecodeError as e:
        return "bad_json", f"invalid JSON: {e.msg} at column {e.colno}", None
    if not isinstance(obj, dict):
        return "not_object", f"expected a JSON object, got {type(obj).__name__}", None
    texts = []
    maybe_surrogate = _SURROGATE_ESCAPE.search(s) is not None
    for key in config.json_keys:
        if key not in obj:
            have = ", ".join(sorted(obj)[:10])
            return "missing_key", f"missing key {key!r} (keys present: {have}; see --json-keys)", None
        value = obj[key]
        if not isinstance(value, str):
            return "not_string", f"key {key!r} holds {type(value).__name__}, expected a string", None
        if not value.strip():
            return "empty_document", f"empty document in key {key!r}", None
        if maybe_surrogate and _has_lone_surrogate(value):
            return "not_utf8", f"key {key!r} holds an unpaired \\uD800-\\uDFFF escape (not valid Unicode)", None
        texts.append(value)
    return "", "", texts


def iter_records(rng: FileRange, config: JsonlReadConfig, report: BadRecordReport,
                 first_line: int | None = None) -> Iterator[tuple[list[str], int]]:
    """Yield ``(texts (one per json key), nbytes of the line)`` for each good record in ``rng``.

    ``first_line`` is the line number of ``rng.start``; when None it is counted only if an error
    has to name a line. Blank lines are ignored. Raises BadRecordError unless
    ``config.skip_bad``."""
    limit = config.max_document_bytes
    local = 0
    line_base = first_line

    def where(n: int) -> int:
        nonlocal line_base
        if line_base is None:
            line_base = line_number_at(rng.path, rng.start)
        return line_base + n

    def bad(kind: str, problem: str, n: int) -> None:
        if not config.skip_bad:
            raise BadRecordError(rng.path, where(n), problem)
        report.add(kind, rng.path, where(n), problem)

    with open(rng.path, "rb") as f:
        f.seek(rng.start)
        pos = rng.start
        while pos < rng.end:
            line = f.readline(limit + 2)
            if not line:
                break
            n = local
            local += 1
            if len(line) > limit + 1:
                # over-long record: skip the rest of the line without holding it in memory
                size = len(line)
                while not line.endswith(b"\n"):
                    line = f.readline(_READ_BLOCK)
                    if not line:
                        break
                    size += len(line)
                pos += size
                bad("too_long", f"record of {size:,} bytes exceeds --max-document-bytes "
                    f"({limit:,})", n)
                continue
            pos += len(line)
            if not line.strip():
                continue
            kind, problem, texts = _problem_of(line, config)
            if texts is None:
                bad(kind, problem, n)
                continue
            yield texts, len(line)


def iter_texts(paths: Sequence[str | os.PathLike], config: JsonlReadConfig,
               report: BadRecordReport | None = None) -> Iterator[str]:
    """Every good text of every file (each JSON key in turn), for tokenizer training and reports."""
    report = report if report is not None else BadRecordReport()
    for p in paths:
        for texts, _ in iter_records(FileRange(str(p), 0, os.path.getsize(p)), config, report,
                                        first_line=1):
            yield from texts
