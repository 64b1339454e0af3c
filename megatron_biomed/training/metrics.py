"""Throughput, model FLOPs / MFU, and where metrics go (console, TensorBoard, W&B, JSON lines).

The step loop keeps its per-step numbers on the device and hands them here: :class:`StepTimer` times each step
with CUDA events on a GPU (read with one synchronisation when the log window closes, so tokens/s and MFU count
the device's work, not the host's kernel launches), and :class:`ScalarWindow` holds each step's scalars, tensors
or plain numbers, until the log interval, when one device-to-host copy reads them all.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Optional

import torch

from megatron_biomed.config.experiment import ExperimentConfig

log = logging.getLogger("megatron_biomed")


class MetricsWriter:
    """Rank-0 sink for scalars: console lines, TensorBoard, optional W&B, optional JSON lines file."""

    def __init__(self, cfg: ExperimentConfig, enabled: bool):
        self.enabled = enabled
        self.tb = None
        self.wandb = None
        self.jsonl = None
        if not enabled:
            return
        lg = cfg.logging
        if lg.tensorboard_dir:
            from torch.utils.tensorboard import SummaryWriter  # optional: tensorboard, only when asked for

            self.tb = SummaryWriter(log_dir=lg.tensorboard_dir)
        if lg.wandb_project:
            try:
                import wandb  # optional: only with logging.wandb_project
            except ImportError as e:
                raise RuntimeError("logging.wandb_project is set but wandb is not installed (pip install wandb)") from e
            self.wandb = wandb.init(project=lg.wandb_project, name=cfg.name, config=cfg.to_dict())
        if lg.metrics_file:
            Path(lg.metrics_file).parent.mkdir(parents=True, exist_ok=True)
            self.jsonl = open(lg.metrics_file, "a")

    def write(self, step: int, scalars: dict, prefix: str = "train") -> None:
        if not self.enabled:
            return
        if self.tb is not None:
            for k, v in scalars.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(f"{prefix}/{k}", v, step)
        if self.wandb is not None:
            self.wandb.log({f"{prefix}/{k}": v for k, v in scalars.items()}, step=step)
        if self.jsonl is not None:
            self.jsonl.write(json.dumps({"kind": prefix, "iteration": step, **scalars}) + "\n")
            self.jsonl.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.jsonl is not None:
            self.jsonl.close()
        if self.wandb is not None:
            self.wandb.finish()


def format_train_line(step: int, total: int, s: dict, loss_name: str = "lm loss") -> str:
    parts = [
        f"iteration {step:>6d}/{total}",
        f"{loss_name} {s['loss']:.6e}",
        f"lr {s['lr']:.3e}",
        f"grad norm {s['grad_norm']:.4f}",
        f"tokens/s {s['tokens_per_s']:.0f}",
        f"model TFLOP/s/rank {s['tflops_per_rank']:.4f}",
    ]
    if s.get("mfu") is not None:
        parts.append(f"MFU {100 * s['mfu']:.2f}%")
    if s.get("peak_memory_gib") is not None:
        parts.append(f"peak memory {s['peak_memory_gib']:.2f} GiB")
    if s.get("skipped"):
        parts.append(f"skipped (non-finite) {s['skipped']}")
    return " | ".join(parts)


def peak_memory_gib() -> Optional[float]:
    """This rank's peak GPU memory allocated by PyTorch so far (GiB); None without CUDA. Read from the caching
    allocator's host-side statistics: no device synchronisation."""
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda.max_memory_allocated() / 2**30


def mfu(tflops_per_rank: float, peak_flops_per_rank: float) -> Optional[float]:
    return tflops_per_rank * 1e12 / peak_flops_per_rank if peak_flops_per_rank > 0 else None


class StepTimer:
    """Seconds of each training step. On a CUDA device: an event recorded on the current stream at ``start`` and
    ``stop``, so a step's time is the device's from reaching the step's first kernel to finishing its last one
    (the host runs ahead between syncs; its clock would measure launches). On CPU: the host clock.
    ``collect`` synchronises once (on the newest event) and returns the steps stopped since the last collect."""

    def __init__(self, device: torch.device):
        self.cuda = torch.device(device).type == "cuda"
        self._start = None
        self._steps: list = []

    def _now(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> None:
        if self._start is None:
            raise RuntimeError("StepTimer.stop() without start()")
        self._steps.append((self._start, self._now()))
        self._start = None

    def discard(self) -> None:
        """Forget the stopped steps without reading them (no synchronisation)."""
        self._steps = []

    def collect(self) -> list[float]:
        """Each stopped step's seconds, oldest first (a device synchronisation on CUDA), and forget them."""
        steps, self._steps = self._steps, []
        if not self.cuda:
            return [end - begin for begin, end in steps]
        if steps:
            steps[-1][1].synchronize()
        return [begin.elapsed_time(end) / 1e3 for begin, end in steps]


class ScalarWindow:
    """Per-step scalar records kept until the log interval. A value may be a device tensor (a loss, a grad
    norm still on the GPU): ``drain`` reads every tensor of every record with one copy to the host."""

    def __init__(self):
        self._records: list[tuple[int, dict]] = []

    def __len__(self) -> int:
        return len(self._records)

    def add(self, step: int, scalars: dict) -> None:
        self._records.append((step, dict(scalars)))

    def clear(self) -> None:
        self._records = []

    def drain(self) -> list[tuple[int, dict]]:
        """The records, oldest first, with every tensor as a Python float (one device->host copy)."""
        records, self._records = self._records, []
        slots = [(i, k) for i, (_, s) in enumerate(records) for k, v in s.items() if isinstance(v, torch.Tensor)]
        if slots:
            device = records[slots[0][0]][1][slots[0][1]].device
            stacked = torch.stack([records[i][1][k].detach().reshape(()).to(device, torch.float64) for i, k in slots])
            for (i, k), value in zip(slots, stacked.tolist()):
                records[i][1][k] = value
        return records
