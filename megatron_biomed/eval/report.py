"""What an evaluation run shows and writes: the console table, the progress bar, and the JSON report (written
atomically: a reader never sees half a report)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

from megatron_biomed.checkpoint import RUN_CONFIG


def progress_bar(enabled: bool, what: str, total: int):
    """(update(done), bar) on stderr, or (None, None) when not ``enabled``."""
    if not enabled:
        return None, None
    bar = tqdm(total=total, desc=what, unit="seq", file=sys.stderr, leave=False)

    def update(done: int):
        bar.n = done
        bar.refresh()

    return update, bar


def format_table(rows: list[dict]) -> str:
    head = f"{'task':<28} {'metric':<16} {'value':>10} {'stderr':>8} {'n':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        se = "" if r["stderr"] is None or r["stderr"] != r["stderr"] else f"{r['stderr']:.4f}"
        lines.append(f"{r['task']:<28} {r['metric']:<16} {r['value']:>10.4f} {se:>8} {r['n']:>8}")
    return "\n".join(lines)


def write_report(path: str | Path, report: dict) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out)


def checkpoint_meta(path: Path) -> dict:
    """The checkpoint a report scored: its directory, iteration and the hash of its recorded config."""
    config_text = (path / RUN_CONFIG).read_text()
    return {
        "checkpoint": str(path),
        "iteration": int(path.name.split("_")[-1]),
        "config_hash": hashlib.sha256(config_text.encode()).hexdigest()[:16],
    }
