"""``--format auto``: tell an input's source from its name and first bytes, else from its XML root element."""

from __future__ import annotations

from pathlib import Path

from megatron_biomed.data.readers.registry import READERS
from megatron_biomed.data.readers.xmlstream import BadInputError, root_name


def formats() -> tuple[str, ...]:
    return READERS.names()


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
