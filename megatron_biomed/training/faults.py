"""Fault injection for the rank-failure tests: a rank killed in the middle of a training step.

Off unless the config asks for it, so production runs pass through these functions untouched:

* ``train.inject_kill_at`` with ``train.inject_kill_rank``: SIGKILL one rank (or all, -1) in the middle of
  that step's forward-backward, after the first micro-batch's forward, while the other ranks are inside
  the step's collectives. Only in a job's first attempt (``TORCHELASTIC_RESTART_COUNT`` unset or 0), so that
  a run restarted by ``torchrun --max-restarts`` resumes and finishes.

The faults inside a save (kill points, a full disk) are the checkpoint's: see checkpoint/faults.py.
"""

from __future__ import annotations

import os
import signal


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
