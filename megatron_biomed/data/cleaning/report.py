"""The cleaning report: what was read, what was kept, and why everything else was dropped.

Printed at the end of a run and written as JSON next to the output shards.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class CleaningReport:
    files_total: int = 0
    files_converted: int = 0  # converted in this run (the rest were complete from an earlier run)
    bad_files: list[dict] = field(default_factory=list)  # {"path", "line", "problem"}
    records_read: int = 0
    deletions_read: int = 0
    records_kept: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count
    bad_records: list[dict] = field(default_factory=list)  # first few {"path", "line", "problem"}
    # kept records a source's flag checks counted, by reason (at step 1: a flagged record may still be dropped as a
    # duplicate in step 2); e.g. clinical notes with --phi-audit flag
    flagged: Counter = field(default_factory=Counter)

    def add_file(self, meta: dict) -> None:
        """Fold in the per-file summary written by the conversion step."""
        self.records_read += meta["records_read"]
        self.deletions_read += meta["deletions_read"]
        self.dropped.update(meta["dropped"])
        self.flagged.update(meta.get("flagged", {}))
        if meta.get("bad_file"):
            self.bad_files.append(meta["bad_file"])
        for bad in meta.get("bad_records", []):
            if len(self.bad_records) < 100:
                self.bad_records.append(bad)

    def to_dict(self) -> dict:
        return {
            "files_total": self.files_total,
            "files_converted": self.files_converted,
            "files_bad": len(self.bad_files),
            "records_read": self.records_read,
            "deletions_read": self.deletions_read,
            "records_kept": self.records_kept,
            "records_dropped": sum(self.dropped.values()),
            "dropped": dict(sorted(self.dropped.items())),
            "flagged": dict(sorted(self.flagged.items())),
            "bad_files": self.bad_files,
            "bad_records": self.bad_records,
        }

    def format(self) -> str:
        d = self.to_dict()
        lines = [
            f"files: {d['files_total']} ({d['files_converted']} converted this run, {d['files_bad']} bad and skipped)",
            f"records read: {d['records_read']}   deletions read: {d['deletions_read']}",
            f"records kept: {d['records_kept']}   dropped: {d['records_dropped']}",
        ]
        for reason, n in sorted(self.dropped.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {reason:<24}{n:>10}")
        if self.flagged:
            lines.append(f"flagged (kept, counted): {sum(self.flagged.values())}")
        for reason, n in sorted(self.flagged.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {reason:<24}{n:>10}")
        for bad in self.bad_files:
            lines.append(f"  bad file {bad['path']}:{bad['line']}: {bad['problem']}")
        return "\n".join(lines)
