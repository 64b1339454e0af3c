"""Field checks shared by the task readers. A check that fails raises :class:`BadRecord` with a
short ``reason`` (the skip count key) and a longer ``problem`` (the error message)."""

from __future__ import annotations

from typing import Any


class BadRecord(Exception):
    """One record is unusable; the reader adds the path and line and raises or counts it."""

    def __init__(self, reason: str, problem: str | None = None) -> None:
        super().__init__(problem or reason)
        self.reason = reason
        self.problem = problem or reason


def json_kind(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def short(text: Any, limit: int = 60) -> str:
    """``repr`` of a value, cut to ``limit`` characters so one bad record gives a one-line message."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def check_text(value: Any, name: str) -> str:
    """``value`` must be a string with something other than whitespace in it."""
    if not isinstance(value, str):
        raise BadRecord(f"{name} not a string", f"{name} must be a string, got {json_kind(value)}")
    if not value.strip():
        raise BadRecord(f"empty {name}", f"{name} is empty")
    return value


def require_text(row: dict, key: str) -> str:
    """``row[key]``, a non-empty string."""
    if key not in row:
        raise BadRecord(f"missing '{key}'")
    return check_text(row[key], f"'{key}'")


def optional_text(row: dict, key: str) -> str:
    """``row[key]`` if present and not null (a string, may be empty), else ``""``."""
    value = row.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRecord(f"'{key}' not a string", f"'{key}' must be a string, got {json_kind(value)}")
    return value


def record_uid(row: dict, default: str, key: str = "id") -> str:
    """The record's own id (string or integer) when it has one, else ``default`` (``path:line``)."""
    value = row.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRecord(f"bad '{key}'", f"'{key}' must be a string or an integer, got {json_kind(value)}")
    return str(value) if str(value).strip() else default
