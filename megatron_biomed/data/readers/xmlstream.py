"""Streaming XML plumbing shared by the MEDLINE and PMC readers.

Opens plain or gzip-compressed files, runs lxml ``iterparse`` with safe settings (no DTD
loading, no network, no entity expansion), and turns every way a file can be broken -- malformed
XML, non-UTF-8 bytes, a truncated gzip stream, an empty file -- into one :class:`BadInputError`
that names the file, the line and the problem.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from lxml import etree


class BadInputError(Exception):
    """An input file (or one record in it) cannot be read.

    ``line`` is the 1-based line of the problem where the parser knows it, else the line of the
    last element read successfully before it (0 when nothing was read).
    """

    def __init__(self, path: str | Path, line: int, problem: str):
        self.path = str(path)
        self.line = int(line)
        self.problem = problem
        super().__init__(f"{self.path}:{self.line}: {problem}")

    def __reduce__(self):  # survive the trip back from a worker process
        return (BadInputError, (self.path, self.line, self.problem))


def is_gzip(path: str | Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


@contextmanager
def open_binary(path: str | Path, data: bytes | None = None) -> Iterator[IO[bytes]]:
    """Open ``path`` (or wrap ``data`` read from it) for binary reading, decompressing gzip.

    Gzip is detected by its magic bytes, not by the file name.
    """
    if data is not None:
        yield gzip.GzipFile(fileobj=io.BytesIO(data)) if data[:2] == b"\x1f\x8b" else io.BytesIO(data)
    elif is_gzip(path):
        with gzip.open(path, "rb") as f:
            yield f
    else:
        with open(path, "rb") as f:
            yield f


def localname(tag: object) -> str:
    """Tag name without namespace (PMC OAI-PMH responses put JATS in a namespace)."""
    if not isinstance(tag, str):  # comments and processing instructions
        return ""
    return tag.rsplit("}", 1)[-1]


def squash(text: str | None) -> str:
    """Collapse runs of whitespace to one space and strip.

    ``str.split()`` splits on exactly the characters ``re``'s ``\\s`` and ``str.strip()`` match (the 29
    code points where ``str.isspace()``; tests/data/test_medline_reference.py checks all of Unicode), so this
    is ``re.sub(r"\\s+", " ", text).strip()``, done in C without the regex engine (a hot spot of the
    MEDLINE reader's profile).
    """
    return " ".join(text.split()) if text else ""


def element_text(el: etree._Element | None) -> str:
    """All text below ``el`` (inline markup such as <i> or <sup> included), whitespace-squashed."""
    if el is None:
        return ""
    if not len(el):  # no child nodes at all (most MEDLINE fields): itertext() would yield just .text
        return squash(el.text)
    return squash("".join(el.itertext()))


def child(el: etree._Element | None, name: str) -> etree._Element | None:
    """First direct child whose local name is ``name``."""
    if el is None:
        return None
    # lxml's tag filter "{*}name" matches `name` in any namespace or none, i.e. by local name, in C
    for c in el.iterchildren("{*}" + name):
        return c
    return None


def children(el: etree._Element | None, name: str) -> list[etree._Element]:
    """Direct children whose local name is ``name``, in document order."""
    if el is None:
        return []
    return list(el.iterchildren("{*}" + name))


def find_path(el: etree._Element | None, *names: str) -> etree._Element | None:
    """Follow direct children by local names, e.g. ``find_path(a, "Journal", "Title")``."""
    for name in names:
        el = child(el, name)
    return el


def iter_elements(
    path: str | Path,
    tags: Iterable[str] | None,
    events: tuple[str, ...] = ("end",),
    data: bytes | None = None,
) -> Iterator[tuple[str, etree._Element]]:
    """Yield ``(event, element)`` for elements whose local name is in ``tags`` (None: all).

    With ``data``, parse those bytes instead and use ``path`` only to name them in errors.
    The caller clears what it is done with (see :func:`release`), which keeps memory bounded
    for multi-gigabyte files. Any read or parse failure becomes :class:`BadInputError`.
    """
    wanted = None if tags is None else set(tags)
    last_line = 0
    seen_any = False
    try:
        with open_binary(path, data) as f:
            parser = etree.iterparse(
                f,
                events=events,
                # filtering in C: Python only sees the elements it asked for; "{*}" matches any
                # namespace or none (PMC OAI-PMH responses are namespaced, .nxml files are not)
                tag=None if wanted is None else [f"{{*}}{t}" for t in sorted(wanted)],
                load_dtd=False,
                no_network=True,
                resolve_entities=False,
                huge_tree=True,
                remove_comments=True,
            )
            for event, el in parser:
                seen_any = True
                last_line = el.sourceline or last_line
                yield event, el
    except etree.XMLSyntaxError as e:
        line = e.lineno or last_line
        msg = str(e.msg if getattr(e, "msg", None) else e)
        if not seen_any and ("no element found" in msg or "Document is empty" in msg or "Start tag expected" in msg):
            raise BadInputError(path, line, f"empty document or not XML (no element found: {msg})") from e
        if "encoding" in msg.lower() or "utf-8" in msg.lower():
            msg = f"bytes that are not valid UTF-8 ({msg})"
        else:
            msg = f"malformed XML ({msg})"
        raise BadInputError(path, line, msg) from e
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise BadInputError(
            path, last_line, f"truncated or corrupt gzip stream ({e}); re-download the file"
        ) from e
    except UnicodeDecodeError as e:
        raise BadInputError(path, last_line, f"bytes that are not valid UTF-8 ({e})") from e


def release(el: etree._Element) -> None:
    """Free a finished element and the already-processed siblings before it."""
    el.clear(keep_tail=True)
    parent = el.getparent()
    if parent is not None:
        while el.getprevious() is not None:
            del parent[0]


def root_name(path: str | Path, data: bytes | None = None) -> str:
    """Local name of the document's root element (reads only up to the first start tag)."""
    gen = iter_elements(path, None, events=("start",), data=data)
    try:
        for _event, el in gen:
            return localname(el.tag)
    finally:
        gen.close()
    raise BadInputError(path, 0, "empty document (no XML element found)")
