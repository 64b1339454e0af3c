"""``--format auto``: tell an input's source from its name and first bytes, else from its XML root element."""

from __future__ import annotations

from pathlib import Path

from megatron_biomed.data.readers.registry import READERS
from megatron_biomed.data.readers.xmlstream import BadInputError, root_name


def formats() -> tuple[str, ...]:
    return READERS.names()


def takes(path: str | Path) -> bool:
    """Whether some reader would take ``path`` found in a directory given to ``--input``: its name ends in one of
    the reader's suffixes and, for a reader told by ``sniff`` alone (no XML roots), the sniff recognises it (so
    e.g. a PMC bulk directory's ``*.filelist.csv`` is not mistaken for an input)."""
    path = Path(path)
    for _name, reader in READERS.items():
        if path.name.endswith(reader.suffixes) and (reader.roots or reader.sniff is None or reader.sniff(path)):
            return True
    return False


def detect_format(path: str | Path) -> str:
    """The name of the registered reader for ``path``; raises :class:`BadInputError` when none recognises it."""
    path = Path(path)
    readers = list(READERS.items())
    for name, reader in readers:
        if reader.sniff is not None and reader.sniff(path):
            return name
    root = root_name(path)
    for name, reader in readers:
        if root in reader.roots:
            return name
    known = ", ".join(f"<{r}> ({name})" for name, reader in readers for r in reader.roots)
    raise BadInputError(
        path, 1, f"cannot tell the format from root element <{root}>: expected one of {known}; "
        "pass --format to force one",
    )
