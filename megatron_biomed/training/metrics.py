"""Throughput, model FLOPs / MFU, and where metrics go (console, TensorBoard, W&B, JSON lines)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Optional

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
    if s.get("skipped"):
        parts.append(f"skipped (non-finite) {s['skipped']}")
    return " | ".join(parts)


def mfu(tflops_per_rank: float, peak_flops_per_rank: float) -> Optional[float]:
    return tflops_per_rank * 1e12 / peak_flops_per_rank if peak_flops_per_rank > 0 else None
