"""Completion markers: ``<work-dir>/markers/<stage>/<task>.json``, written after a task has published its outputs.

A marker carries the task's digest (settings, its own inputs for the first stage, and the digests of every marker of
the stage before it), so an unchanged task is skipped on relaunch and anything downstream of a changed input reruns.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from megatron_biomed.data.sharding import write_json_atomic
from megatron_biomed.errors import BiomedError

MARKER_DIR = "markers"


class StageNotReady(BiomedError, RuntimeError):
    """A task was started before every task of the stage it reads had finished; the message names them."""


def marker_path(work: Path, stage: str, task: int) -> Path:
    return Path(work) / MARKER_DIR / stage / f"{task:05d}.json"


def read_marker(work: Path, stage: str, task: int) -> dict | None:
    try:
        return json.loads(marker_path(work, stage, task).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_marker(work: Path, stage: str, task: int, digest: str, info: dict) -> Path:
    path = marker_path(work, stage, task)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"stage": stage, "task": task, "digest": digest, **info})
    return path


def digest_of(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
