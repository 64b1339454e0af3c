"""File access for the task readers: opening plain or gzip files, iterating JSONL and CSV with
1-based line numbers, scanning a whole-file JSON document member by member (so each record's line
is known), and the collector that turns a bad record into a :class:`TaskDataError` or a count.

Text is decoded as UTF-8 with ``surrogateescape`` so that one record with invalid bytes is reported
on its own line instead of failing the whole read from inside the codec.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from megatron_biomed.data.tasks._fields import BadRecord, json_kind
from megatron_biomed.data.tasks.errors import ReadReport, TaskDataError

_GZIP_MAGIC = b"\x1f\x8b"
_BAD_BYTES = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of bytes that are not UTF-8
_WS = re.compile(r"[ \t\n\r]*")
_READ_ERRORS = (OSError, EOFError, zlib.error)


class Collector:
    """Collects one file's records: counts good ones, raises or counts bad ones."""

    def __init__(self, path: str | os.PathLike, skip_bad: bool, report: ReadReport | None) -> None:
        self.path = str(path)
        self.skip_bad = skip_bad
        self.report = report if report is not None else ReadReport(self.path)
        if not self.report.path:
            self.report.path = self.path

    def ok(self) -> None:
        self.report.read += 1

    def bad(self, line: int | None, reason: str, problem: str) -> None:
        """A bad record at ``line``: raise, or with ``skip_bad`` count it and go on."""
        message = self.message(line, problem)
        if not self.skip_bad:
            raise TaskDataError(message, path=self.path, line=line, reason=reason)
        self.report.count_skip(reason, message)

    def bad_record(self, line: int | None, err: BadRecord, prefix: str = "") -> None:
        self.bad(line, err.reason, prefix + err.problem)

    def not_requested(self, reason: str) -> None:
        """A good record the caller did not ask for: counted, never an error."""
        self.report.count_skip(reason)

    def fatal(self, line: int | None, problem: str) -> TaskDataError:
        """An error that ends the read even with ``skip_bad`` (the file itself is broken)."""
        return TaskDataError(self.message(line, problem), path=self.path, line=line, reason=problem)

    def message(self, line: int | None, problem: str) -> str:
        return f"{self.path}:{line}: {problem}" if line is not None else f"{self.path}: {problem}"


def open_text(path: str | os.PathLike, newline: str | None = None) -> TextIO:
    """Open a UTF-8 text file, gunzipping it when it starts with the gzip magic bytes."""
    p = Path(path)
    if not p.exists():
        raise TaskDataError(f"{path}: no such file", path=str(path))
    if p.is_dir():
        raise TaskDataError(f"{path}: is a directory, expected a file", path=str(path))
    try:
        with open(p, "rb") as f:
            magic = f.read(2)
        kw = dict(encoding="utf-8-sig", errors="surrogateescape", newline=newline)
        if magic == _GZIP_MAGIC:
            return gzip.open(p, "rt", **kw)
        return open(p, **kw)
    except OSError as e:
        raise TaskDataError(f"{path}: cannot open ({e.strerror or e})", path=str(path)) from e


def has_bad_bytes(*texts: str) -> bool:
    return any(_BAD_BYTES.search(t) for t in texts)


def iter_jsonl(col: Collector) -> Iterator[tuple[int, dict]]:
    """``(line, object)`` for every JSONL line that holds a JSON object; blank lines are ignored and
    other lines go to ``col.bad``."""
    line = 0
    with open_text(col.path) as f:
        try:
            for line, text in enumerate(f, 1):
                if not text.strip():
                    continue
                if has_bad_bytes(text):
                    col.bad(line, "invalid UTF-8", "line is not valid UTF-8")
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as e:
                    col.bad(line, "invalid JSON", f"invalid JSON: {e.msg} (column {e.colno})")
                    continue
                if not isinstance(row, dict):
                    col.bad(line, "not a JSON object", f"expected a JSON object, got {json_kind(row)}")
                    continue
                yield line, row
        except _READ_ERRORS as e:
            raise col.fatal(line + 1, f"cannot read the file past this line ({e})") from e


def iter_tsv(col: Collector) -> Iterator[tuple[int, list[str]]]:
    """``(line, fields)`` for every non-blank line split on tabs (no quoting: the corpora's sentences hold
    quote characters as text); invalid UTF-8 goes to ``col.bad``."""
    line = 0
    with open_text(col.path) as f:
        try:
            for line, text in enumerate(f, 1):
                text = text.rstrip("\r\n")
                if not text.strip():
                    continue
                if has_bad_bytes(text):
                    col.bad(line, "invalid UTF-8", "line is not valid UTF-8")
                    continue
                yield line, text.split("\t")
        except _READ_ERRORS as e:
            raise col.fatal(line + 1, f"cannot read the file past this line ({e})") from e


def first_line(path: str | os.PathLike) -> str:
    """The first non-blank line of a text file (``""`` if none), to sniff its layout."""
    with open_text(path) as f:
        try:
            for text in f:
                if text.strip():
                    return text
        except _READ_ERRORS as e:
            raise TaskDataError(f"{path}: cannot read ({e})", path=str(path)) from e
    return ""


def iter_csv(col: Collector) -> Iterator[tuple[int, list[str]]]:
    """``(line, fields)`` for every non-empty CSV record; ``line`` is where the record starts, which
    differs from ``csv.reader.line_num`` (where it ends) when a quoted field holds newlines."""
    with open_text(col.path, newline="") as f:
        reader = csv.reader(f, strict=True)
        end = 0
        while True:
            start = end + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise col.fatal(start, f"malformed CSV in the record starting here: {e}") from e
            except _READ_ERRORS as e:
                raise col.fatal(start, f"cannot read the file past this line ({e})") from e
            end = reader.line_num
            if fields and any(fld.strip() for fld in fields):
                yield start, fields


class JsonDocument:
    """A whole-file JSON text walked one member (object) or item (array) at a time, so that each
    record's starting line is known. A syntax error anywhere is fatal: no record boundary can be
    trusted after it."""

    def __init__(self, col: Collector) -> None:
        self.col = col
        self._line_pos, self._line = 0, 1
        with open_text(col.path) as f:
            try:
                self.text = f.read()
            except _READ_ERRORS as e:
                raise col.fatal(None, f"cannot read ({e})") from e
        bad = _BAD_BYTES.search(self.text)
        if bad:
            raise col.fatal(self.line_at(bad.start()), "not valid UTF-8")
        self._decoder = json.JSONDecoder()

    def line_at(self, pos: int) -> int:
        """1-based line of character ``pos``; cheap for increasing positions."""
        if pos < self._line_pos:
            self._line_pos, self._line = 0, 1
        self._line += self.text.count("\n", self._line_pos, pos)
        self._line_pos = pos
        return self._line

    def root(self) -> tuple[int, str]:
        """Position and first character of the top-level value."""
        pos = self._skip(0)
        if pos >= len(self.text):
            raise self.col.fatal(None, "empty file, expected a JSON document")
        return pos, self.text[pos]

    def members(self, pos: int, top_level: bool = False) -> Iterator[tuple[str, int, int, Any]]:
        """``(key, key_pos, value_pos, value)`` for the object starting at ``pos``; with ``top_level``
        also checks that nothing but whitespace follows it."""
        pos = self._skip(pos + 1)
        if self._peek(pos) == "}":
            if top_level:
                self._end(pos + 1)
            return
        while True:
            if self._peek(pos) != '"':
                raise self._syntax(pos, "expected a quoted object key")
            key, end = self._decode(pos)
            colon = self._skip(end)
            if self._peek(colon) != ":":
                raise self._syntax(colon, "expected ':' after the object key")
            value_pos = self._skip(colon + 1)
            value, end = self._decode(value_pos)
            yield key, pos, value_pos, value
            pos = self._skip(end)
            char = self._peek(pos)
            if char == ",":
                pos = self._skip(pos + 1)
            elif char == "}":
                if top_level:
                    self._end(pos + 1)
                return
            else:
                raise self._syntax(pos, "expected ',' or '}' after the object member")

    def items(self, pos: int, top_level: bool = False) -> Iterator[tuple[int, Any]]:
        """``(item_pos, item)`` for the array starting at ``pos``; ``top_level`` as for :meth:`members`."""
        pos = self._skip(pos + 1)
        if self._peek(pos) == "]":
            if top_level:
                self._end(pos + 1)
            return
        while True:
            item, end = self._decode(pos)
            yield pos, item
            pos = self._skip(end)
            char = self._peek(pos)
            if char == ",":
                pos = self._skip(pos + 1)
            elif char == "]":
                if top_level:
                    self._end(pos + 1)
                return
            else:
                raise self._syntax(pos, "expected ',' or ']' after the array item")

    def _end(self, pos: int) -> None:
        pos = self._skip(pos)
        if pos < len(self.text):
            raise self._syntax(pos, "extra data after the top-level JSON value")

    def _decode(self, pos: int) -> tuple[Any, int]:
        try:
            return self._decoder.raw_decode(self.text, pos)
        except json.JSONDecodeError as e:
            raise self.col.fatal(e.lineno, f"invalid JSON: {e.msg} (column {e.colno})") from e
        except RecursionError as e:
            raise self.col.fatal(self.line_at(pos), "invalid JSON: nested too deeply") from e

    def _skip(self, pos: int) -> int:
        return _WS.match(self.text, pos).end()

    def _peek(self, pos: int) -> str:
        return self.text[pos] if pos < len(self.text) else ""

    def _syntax(self, pos: int, what: str) -> TaskDataError:
        column = pos - self.text.rfind("\n", 0, pos)
        found = "end of file" if pos >= len(self.text) else repr(self.text[pos])
        return self.col.fatal(self.line_at(pos), f"invalid JSON: {what}, found {found} (column {column})")
