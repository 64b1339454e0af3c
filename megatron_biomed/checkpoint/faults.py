"""Fault injection inside a save, for the failure tests: each fault is off unless its environment variable asks
for it, so production saves pass through these functions untouched. What they inject is what a cluster run meets:

* ``MEGATRON_BIOMED_KILL_IN_SAVE=<point>[@<iteration>]``: SIGKILL every rank at that point of a save
  (``SAVE_KILL_POINTS``; ``async_in_flight`` is the first check after an asynchronous save was started, while
  its writes are in flight or done but not yet finalised).
* ``MEGATRON_BIOMED_SAVE_ERROR=<iteration>[@<rank>]``: the save of that iteration hits a real ``ENOSPC``
  inside megatron-core's writer (its first shard file is redirected to ``/dev/full``), on every rank or the
  one named: what a full disk does, without needing a small filesystem.

The faults of a training step (a rank killed mid-step) are training's: see training/faults.py.
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
    # AsyncRequest is a NamedTuple: _replace is its public copy-with-changes.
    return request._replace(
        async_fn_args=tuple(args),
        preload_fn=(lambda: redirect(preload())) if preload is not None else None,
    )
