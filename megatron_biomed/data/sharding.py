"""Parallel per-file shard runner with atomic, resumable outputs.

One input file becomes one output shard. A shard is written under a temporary name and renamed
only when complete, so a shard that exists under its final name is always whole; a rerun skips
the tasks whose ``is_complete`` check passes. Workers are processes (XML parsing is CPU-bound);
``workers=1`` runs in-process, which is also what tests and debuggers want.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class ShardTask:
    """One input file and the stem of the shard it becomes (``<stem>.jsonl``)."""

    index: int  # position in file-name order; later files override earlier ones
    input: Path
    stem: str


def shard_stem(path: str | Path) -> str:
    """``pubmed25n0001.xml.gz`` -> ``pubmed25n0001``; ``oa_comm.PMC000xxxxxx.tar.gz`` -> ``oa_comm.PMC000xxxxxx``."""
    name = Path(path).name
    for suffix in (".gz", ".tgz", ".tar", ".xml", ".nxml", ".jsonl", ".json"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def make_tasks(inputs: Iterable[str | Path]) -> list[ShardTask]:
    """Tasks in file-name order (NLM numbers baseline then update files, so names sort by age).

    Raises ``ValueError`` when two inputs would write the same shard.
    """
    paths = sorted({Path(p) for p in inputs}, key=lambda p: (p.name, str(p)))
    seen: dict[str, Path] = {}
    tasks = []
    for i, p in enumerate(paths):
        stem = shard_stem(p)
        if stem in seen:
            raise ValueError(
                f"inputs {seen[stem]} and {p} would both write shard '{stem}.jsonl'; "
                "rename one or convert them in separate --output-dir runs"
            )
        seen[stem] = p
        tasks.append(ShardTask(i, p, stem))
    return tasks


def tmp_path(final: str | Path) -> Path:
    """Where to write ``final`` before it is complete (never matches ``*.jsonl``)."""
    final = Path(final)
    return final.with_name(f"{final.name}.{os.getpid()}{TMP_SUFFIX}")


def commit(tmp: str | Path, final: str | Path) -> None:
    """Make a finished temporary file visible under its final name (atomic on POSIX)."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 1) -> None:
    tmp = tmp_path(path)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False)
        f.write("\n")
    commit(tmp, path)


def remove_stale_tmp(directory: str | Path) -> int:
    """Delete temporary files a killed run left behind; returns how many."""
    n = 0
    for p in Path(directory).glob(f"*{TMP_SUFFIX}"):
        p.unlink(missing_ok=True)
        n += 1
    return n


def run_shards(
    tasks: Sequence[ShardTask],
    work: Callable[[ShardTask], dict],
    *,
    workers: int = 1,
    is_complete: Callable[[ShardTask], bool] = lambda t: False,
    desc: str = "shards",
    progress: bool = True,
) -> dict[int, dict | None]:
    """Run ``work(task)`` for every task not already complete.

    Returns ``{task.index: result}`` (``None`` for a skipped, already complete task). The first
    exception stops the run: queued tasks are cancelled and the exception propagates, so nothing
    is committed for the failing file. ``work`` must be a picklable top-level callable when
    ``workers > 1``.
    """
    results: dict[int, dict | None] = {}
    todo = []
    for t in tasks:
        if is_complete(t):
            results[t.index] = None
        else:
            todo.append(t)
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc=desc, unit="file", disable=not progress)
    try:
        if workers <= 1 or len(todo) <= 1:
            for t in todo:
                results[t.index] = work(t)
                bar.update(1)
            return results
        # spawn, not fork: the parent has threads (tqdm's monitor) and fork() may deadlock them
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending = {pool.submit(work, t): t for t in todo}
            while pending:
                done, _ = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    t = pending.pop(fut)
                    err = fut.exception()
                    if err is not None:
                        for other in pending:
                            other.cancel()
                        pool.shutdown(wait=True, cancel_futures=True)
                        raise err
                    results[t.index] = fut.result()
                    bar.update(1)
        return results
    finally:
        bar.close()
