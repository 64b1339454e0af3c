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

    def should_stop(self) -> bool:
        """True on every rank when any rank got a signal (a collective: call it on all ranks)."""
        # torch is heavy: this module is imported by the tools before anything else, to catch an early signal
        import torch
        import torch.distributed as dist  # torch, as above

        # nccl reduces CUDA tensors only; gloo takes CPU ones.
        device = "cuda" if torch.cuda.is_available() else "cpu"
        flag = torch.tensor([1 if self.received is not None else 0], dtype=torch.int32, device=device)
        if dist.is_initialized():
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

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
