"""Preemption: SIGTERM (torchrun/SLURM shutdown) and SIGUSR1 (SLURM's --signal warning) request a save
at the next step boundary followed by a clean exit."""

from __future__ import annotations

import signal

import torch
import torch.distributed as dist

DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class PreemptionHandler:
    def __init__(self, signals=DEFAULT_SIGNALS):
        self.received: int | None = None
        self._previous = {}
        for sig in signals:
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        self.received = signum

    def should_stop(self) -> bool:
        """True on every rank when any rank got a signal (a collective: call it on all ranks)."""
        # nccl reduces CUDA tensors only; gloo takes CPU ones.
        device = "cuda" if torch.cuda.is_available() else "cpu"
        flag = torch.tensor([1 if self.received is not None else 0], dtype=torch.int32, device=device)
        if dist.is_initialized():
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
