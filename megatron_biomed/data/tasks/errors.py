"""What a task reader reports: the error a bad record raises and the counts of skipped records.

Every message has the form ``path:line: problem`` (line = 1-based line where the record starts),
so an editor can jump to it. With ``skip_bad=True`` the readers skip bad records instead and count
them in a :class:`ReadReport` by a short reason such as ``"missing 'cop'"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from megatron_biomed.errors import BiomedError

MAX_FIRST_ERRORS = 5


class TaskDataError(BiomedError, ValueError):
    """A task data file or record that cannot be used; ``str(err)`` is ``path:line: problem``.

    ``path``, ``line`` and ``reason`` (the short category used as the skip count key) are kept as
    attributes when known, so callers can test for them without parsing the message.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 reason: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.reason = reason


@dataclass
class ReadReport:
    """How many records a reader returned and how many it skipped, by reason."""

    path: str
    read: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def count_skip(self, reason: str, message: str | None = None) -> None:
        """Count one skipped record; ``message`` (a bad record's error) is kept among the first few."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if message is not None and len(self.first_errors) < MAX_FIRST_ERRORS:
            self.first_errors.append(message)


def format_report(report: ReadReport) -> str:
    """One line for logs, e.g. ``read 500 items from X; skipped 3 (2 missing 'cop', 1 cop out of range)``."""
    noun = "item" if report.read == 1 else "items"
    line = f"read {report.read} {noun} from {report.path}"
    if report.skipped:
        reasons = sorted(report.skipped.items(), key=lambda kv: (-kv[1], kv[0]))
        line += f"; skipped {report.num_skipped} (" + ", ".join(f"{n} {r}" for r, n in reasons) + ")"
    return line
