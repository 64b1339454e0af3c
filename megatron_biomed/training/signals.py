"""Preemption: SIGTERM (torchrun/SLURM shutdown) and SIGUSR1 (SLURM's ``--signal`` warning before the time limit)
request a save at the next step boundary followed by a clean exit (status 0).

A signal can arrive before the training loop runs (a short time limit, a slow start): ``catch_early`` (called by
tools/pretrain.py and tools/finetune.py before their heavy imports) records it instead of letting the default
action end the process, and the loop's :class:`PreemptionHandler` honours it after the first step.

After a stop for preemption the run leaves a marker, ``PREEMPTED_MARKER`` in ``checkpoint.save``, naming the
iteration saved; a run that finishes (or starts) removes it. examples/_launch.sh reads it to tell "stopped early,
resume me" from "done" (both exit 0) and, with RESUBMIT_ON_PREEMPT=1, requeues the SLURM job.

Imports no torch at module level, so the tools can install the early handler first thing."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
# our choice: a file in the checkpoint directory, beside megatron's latest_checkpointed_iteration.txt
PREEMPTED_MARKER = "preempted.json"

_early_received: int | None = None


def _on_early_signal(signum, frame):
    global _early_received
    _early_received = signum


def catch_early(signals=DEFAULT_SIGNALS) -> None:
    """Record a preemption signal that arrives while the process is still starting (imports, model build)."""
    for sig in signals:
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _on_early_signal)


def take_early_signal() -> int | None:
    """The signal ``catch_early`` recorded (None if none), handed over once."""
    global _early_received
    received, _early_received = _early_received, None
    return received


class PreemptionHandler:
    def __init__(self, signals=DEFAULT_SIGNALS):
        self.received: int | None = take_early_signal()
        self._previous = {}
        for sig in signals:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        self.received = signum

    @property
    def requested(self) -> bool:
        """Whether this rank got a signal. The loop folds it into each step's metrics all-reduce (any rank's
        request stops every rank at the same step boundary) instead of a collective and a host read of its own."""
        return self.received is not None

    def signal_name(self) -> str:
        """The signal this rank received ("SIGUSR1"), or "another rank's signal"."""
        return signal.Signals(self.received).name if self.received is not None else "another rank's signal"

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def write_preempted_marker(save_dir: str | Path, iteration: int, signal_name: str) -> Path:
    """``<save_dir>/preempted.json``: the run stopped for preemption after saving ``iteration`` (tmp + rename)."""
    path = Path(save_dir) / PREEMPTED_MARKER
    record = {"iteration": iteration, "signal": signal_name, "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record) + "\n")
    os.replace(tmp, path)
    return path


def clear_preempted_marker(save_dir: str | Path) -> None:
    (Path(save_dir) / PREEMPTED_MARKER).unlink(missing_ok=True)
