"""Where checkpoints live on disk (Megatron-LM's layout), which one is the newest complete one, and the error
every checkpoint problem raises.

``<root>/iter_0000010/`` holds one checkpoint; ``<root>/latest_checkpointed_iteration.txt`` (the tracker) names
the newest complete one. A checkpoint is complete once dist_checkpointing wrote its ``metadata.json``, which it
writes last, after every shard; a save in progress lives under ``iter_XXXXXXX.tmp`` (see publish.py).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Optional

from megatron_biomed.checkpoint.manifest import fsync_dir
from megatron_biomed.errors import BiomedError

TRACKER = "latest_checkpointed_iteration.txt"
ITER_RE = re.compile(r"^iter_(\d{7})$")


class CheckpointError(BiomedError, RuntimeError):
    """A checkpoint is missing, incomplete or incompatible with this run."""


def iteration_dir(root: str | Path, iteration: int) -> Path:
    return Path(root) / f"iter_{iteration:07d}"


def is_complete(path: Path) -> bool:
    # dist_checkpointing writes metadata.json last, after every shard.
    return path.is_dir() and (path / "metadata.json").is_file()


def latest_iteration(root: str | Path) -> Optional[int]:
    """Newest complete checkpoint's iteration, from the tracker file (None if there is none)."""
    tracker = Path(root) / TRACKER
    if not tracker.is_file():
        return None
    text = tracker.read_text().strip()
    if not text.isdigit():
        raise CheckpointError(f"{tracker}: expected an iteration number, found {text!r}")
    iteration = int(text)
    if not is_complete(iteration_dir(root, iteration)):
        raise CheckpointError(
            f"{tracker} names iteration {iteration} but {iteration_dir(root, iteration)} is not a complete checkpoint"
        )
    return iteration


def complete_iterations(root: Path) -> list[int]:
    """Iterations of the complete ``iter_*`` directories under ``root``, newest first (whatever the tracker says)."""
    return sorted(
        (int(m.group(1)) for p in root.iterdir() if (m := ITER_RE.match(p.name)) and is_complete(p)), reverse=True
    )


def checkpoint_path(root: str | Path, iteration: Optional[int] = None) -> Path:
    """The directory of the latest (or given) complete checkpoint under ``root``; ``root`` may also be an
    ``iter_XXXXXXX`` directory itself."""
    root = Path(root)
    if ITER_RE.match(root.name) and is_complete(root):
        return root
    if iteration is None:
        iteration = latest_iteration(root)
        if iteration is None:
            raise CheckpointError(f"{root}: no checkpoint there (no {TRACKER} naming a complete iter_* directory)")
    path = iteration_dir(root, iteration)
    if not is_complete(path):
        raise CheckpointError(f"{path} is not a complete checkpoint")
    return path


def write_tracker(root: Path, iteration: int) -> None:
    """Name ``iteration`` in the tracker: a new file, fsynced, renamed over the old one, and the rename made
    durable, so a crash leaves either the old tracker or the new one."""
    tracker_tmp = root / (TRACKER + ".tmp")
    with open(tracker_tmp, "w") as f:
        f.write(f"{iteration}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tracker_tmp, root / TRACKER)
    fsync_dir(root)


def prune(root: Path, keep_last: int) -> None:
    """Remove all but the newest ``keep_last`` complete checkpoints under ``root``."""
    for iteration in sorted(complete_iterations(root))[:-keep_last]:
        shutil.rmtree(iteration_dir(root, iteration), ignore_errors=True)
