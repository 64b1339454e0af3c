"""What a plant is: a known bug, written as exact text replacements, and the tests that must fail with it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Plant:
    name: str
    what: str  # the bug, in words
    edits: list[tuple[str, str, str]]  # (file, old text, new text): old must occur exactly once in file
    tests: list[str]  # pytest node ids; at least one must fail with the plant in place
    fast: bool = False  # part of the CI subset (tests/mutations/test_fast_plants.py): its tests take seconds
    notes: list[str] = field(default_factory=list)
