"""Fault injection for the failure tests: every way a test makes a run fail on purpose, in one place.

Each fault is off unless its environment variable (or config field) asks for it, so production runs pass
through these functions untouched. What they inject is what a cluster run meets:

* ``MEGATRON_BIOMED_KILL_IN_SAVE=<point>[@<iteration>]``: SIGKILL every rank at that point of a save
  (``SAVE_KILL_POINTS``; ``async_in_flight`` is the first check after an asynchronous save was started, while
  its writes are in flight or done but not yet finalised).
* ``MEGATRON_BIOMED_SAVE_ERROR=<iteration>[@<rank>]``: the save of that iteration hits a real ``ENOSPC``
  inside megatron-core's writer (its first shard file is redirected to ``/dev/full``), on every rank or the
  one named: what a full disk does, without needing a small filesystem.
* ``train.inject_kill_at`` with ``train.inject_kill_rank``: SIGKILL one rank (or all, -1) in the middle of
  that step's forward-backward, after the first micro-batch's forward, while the other ranks are inside
  the step's collectives. Only in a job's first attempt (``TORCHELASTIC_RESTART_COUNT`` unset or 0), so that
  a run restarted by ``torchrun --max-restarts`` resumes and finishes.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

KILL_IN_SAVE_ENV = "MEGATRON_BIOMED_KILL_IN_SAVE"
SAVE_KILL_POINTS = ("before_shards", "after_shards", "before_rename", "before_tracker")
ASYNC_KILL_POINT = "async_in_flight"
SAVE_ERROR_ENV = "MEGATRON_BIOMED_SAVE_ERROR"
_FULL_DEVICE = Path("/dev/full")


def _matches(spec: str, iteration: int) -> bool:
    return not spec or int(spec) == iteration


def kill_point(name: str, iteration: int) -> None:
    """SIGKILL this process if ``MEGATRON_BIOMED_KILL_IN_SAVE`` names this point of this save."""
    want = os.environ.get(KILL_IN_SAVE_ENV)
    if not want:
        return
    point, _, at = want.partition("@")
    if point == name and _matches(at, iteration):
        os.kill(os.getpid(), signal.SIGKILL)


def with_save_error(request, iteration: int, rank: int):
    """``request`` (megatron-core's AsyncRequest of a save) with its first shard written to /dev/full when
    ``MEGATRON_BIOMED_SAVE_ERROR`` names this iteration (and rank); else ``request`` itself."""
    want = os.environ.get(SAVE_ERROR_ENV)
    if not want or request.async_fn is None:
        return request
    at, _, on_rank = want.partition("@")
    if int(at) != iteration or (on_rank and int(on_rank) != rank):
        return request

    def redirect(buckets):
        _name, key, data = buckets[0]
        return [(_FULL_DEVICE, key, data), *buckets[1:]]

    args = list(request.async_fn_args)
    args[1] = redirect(args[1])
    preload = request.preload_fn
    return request._replace(
        async_fn_args=tuple(args),
        preload_fn=(lambda: redirect(preload())) if preload is not None else None,
    )


def first_attempt() -> bool:
    """False in a job that torchrun's elastic agent restarted."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) == 0


def with_rank_kill(forward_step_func, rank: int):
    """Wrap a forward step so that ``rank`` SIGKILLs itself after its first micro-batch's forward."""

    def step(data_iterator, model):
        out = forward_step_func(data_iterator, model)
        os.kill(os.getpid(), signal.SIGKILL)
        return out

    return step


def kills_this_step(iteration: int, inject_kill_at: int, inject_kill_rank: int, rank: int) -> bool:
    """Whether this rank dies in this step (``train.inject_kill_at`` / ``train.inject_kill_rank``)."""
    if not inject_kill_at or iteration != inject_kill_at or not first_attempt():
        return False
    return inject_kill_rank < 0 or inject_kill_rank == rank
