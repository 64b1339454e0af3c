"""One registration style for every seam: a literal table ``name -> "module:attribute"``, resolved on first use.

Each seam (model families, kernel providers, tasks, Hugging Face adapters, planner terms) writes its table once,
at the top of its registry module, so a newcomer sees every registered name in one place; the entry's module is
imported only when the name is asked for (pretraining never imports the fine-tuning code, the planner never
builds a model). Tests and plugins add entries with :meth:`Registry.register` -- a "module:attribute" string or
the object itself -- and :meth:`Registry.scoped` undoes what was added inside a ``with`` block.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Generic, Iterator, TypeVar

from megatron_biomed.errors import BiomedError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one seam.

    ``kind`` / ``plural`` name an entry in messages ("model family" / "families"); ``error`` is the seam's error
    class, raised for an unknown name with the known ones listed and ``hint`` (what to set or register) after."""

    def __init__(
        self, kind: str, table: dict[str, str | T], *, error: type[BiomedError], plural: str, hint: str = ""
    ) -> None:
        self.kind = kind
        self.plural = plural
        self.error = error
        self.hint = hint
        self._table: dict[str, str | T] = dict(table)
        self._resolved: dict[str, T] = {}

    def names(self) -> tuple[str, ...]:
        """Registered names, in table order (then registration order)."""
        return tuple(self._table)

    def __contains__(self, name: object) -> bool:
        return name in self._table

    def entry(self, name: str) -> str | T:
        """What the table holds for ``name`` (unresolved)."""
        self._check(name)
        return self._table[name]

    def get(self, name: str) -> T:
        """The entry registered as ``name``, its module imported now if it was given as a path."""
        self._check(name)
        if name not in self._resolved:
            self._resolved[name] = _resolve(self._table[name], f"{self.kind} {name!r}")
        return self._resolved[name]

    def items(self) -> Iterator[tuple[str, T]]:
        """(name, entry) of every registered name, each resolved."""
        for name in self.names():
            yield name, self.get(name)

    def register(self, name: str, entry: str | T, *, replace: bool = False) -> T | str:
        """Add ``entry`` (an object, or "module:attribute") as ``name``. A taken name is refused unless
        ``replace`` (registering the very same entry again is harmless)."""
        taken = self._table.get(name)
        same = taken is entry or (isinstance(entry, str) and taken == entry)
        if name in self._table and not replace and not same:
            raise ValueError(f"{self.kind} {name!r} is already registered ({self._table[name]!r}); pass replace=True")
        self._table[name] = entry
        self._resolved.pop(name, None)
        return entry

    @contextlib.contextmanager
    def scoped(self) -> Iterator[Registry[T]]:
        """Registrations made inside the block are undone when it ends (for tests)."""
        table, resolved = dict(self._table), dict(self._resolved)
        try:
            yield self
        finally:
            self._table, self._resolved = table, resolved

    def _check(self, name: str) -> None:
        if name not in self._table:
            hint = f" ({self.hint})" if self.hint else ""
            raise self.error(f"unknown {self.kind} {name!r}; known {self.plural}: {', '.join(self._table)}{hint}")

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._table)})"


def _resolve(entry, what: str):
    if not isinstance(entry, str):
        return entry
    module, _, attribute = entry.partition(":")
    if not attribute:
        raise ValueError(f"{what}: registry entry {entry!r} must be 'module:attribute'")
    return getattr(importlib.import_module(module), attribute)
