"""One candidate parallel layout of a run, and how it reads from / writes to an ExperimentConfig."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

from megatron_biomed.config.experiment import ExperimentConfig
from megatron_biomed.config.loading import apply_overrides

RECOMPUTE = ("none", "selective", "full")


@dataclass(frozen=True)
class Layout:
    """TP x PP x DP ranks, the micro-batch, activation recomputation, distributed optimizer, SP.

    ``recompute="full"`` recomputes ``recompute_num_layers`` layers per model chunk (megatron-core's
    "block" method; None = every layer, as "uniform" with groups of 1)."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    vpp: Optional[int] = None
    micro_batch_size: int = 1
    recompute: str = "none"
    recompute_num_layers: Optional[int] = None
    distributed_optimizer: bool = True
    sequence_parallel: bool = False

    @property
    def world_size(self) -> int:
        return self.tp * self.pp * self.dp

    def describe(self) -> str:
        parts = [f"TP{self.tp}", f"PP{self.pp}"] + ([f"VPP{self.vpp}"] if self.vpp else []) + [f"DP{self.dp}"]
        rec = self.recompute if self.recompute != "full" or self.recompute_num_layers is None else (
            f"full({self.recompute_num_layers}/chunk)"
        )
        flags = [f"mbs{self.micro_batch_size}", f"recompute={rec}"]
        flags += ["distopt"] if self.distributed_optimizer else []
        flags += ["SP"] if self.sequence_parallel else []
        return " ".join(parts + flags)

    def set_flags(self) -> list[str]:
        """The layout as tools/pretrain.py ``--set`` overrides (world size = TP x PP x DP ranks)."""
        flags = [
            f"parallel.tensor_model_parallel_size={self.tp}",
            f"parallel.pipeline_model_parallel_size={self.pp}",
        ]
        if self.vpp:
            flags.append(f"parallel.virtual_pipeline_model_parallel_size={self.vpp}")
        flags += [
            f"parallel.sequence_parallel={str(self.sequence_parallel).lower()}",
            f"parallel.use_distributed_optimizer={str(self.distributed_optimizer).lower()}",
            f"train.micro_batch_size={self.micro_batch_size}",
        ]
        if self.distributed_optimizer and self.dp > 1:
            flags += ["parallel.overlap_grad_reduce=true", "parallel.overlap_param_gather=true"]
        if self.recompute == "selective":
            flags.append("train.recompute_granularity=selective")
        elif self.recompute == "full":
            flags.append("train.recompute_granularity=full")
            if self.recompute_num_layers is None:
                flags += ["train.recompute_method=uniform", "train.recompute_num_layers=1"]
            else:
                flags += ["train.recompute_method=block", f"train.recompute_num_layers={self.recompute_num_layers}"]
        return flags

    def apply(self, cfg: ExperimentConfig) -> ExperimentConfig:
        """A copy of ``cfg`` with this layout's fields set."""
        return apply_overrides(copy.deepcopy(cfg), self.set_flags())


def layout_from_config(cfg: ExperimentConfig, world_size: int) -> Layout:
    """The layout ``cfg`` asks for on ``world_size`` ranks."""
    p, t = cfg.parallel, cfg.train
    dp = world_size // (p.tensor_model_parallel_size * p.pipeline_model_parallel_size)
    recompute = t.recompute_granularity or "none"
    n = None
    if recompute == "full":
        if t.recompute_num_layers_per_stage:
            n = max(t.recompute_num_layers_per_stage)
        elif t.recompute_method == "block":
            n = t.recompute_num_layers
    return Layout(
        tp=p.tensor_model_parallel_size,
        pp=p.pipeline_model_parallel_size,
        dp=max(dp, 1),
        vpp=p.virtual_pipeline_model_parallel_size,
        micro_batch_size=t.micro_batch_size,
        recompute=recompute,
        recompute_num_layers=n,
        distributed_optimizer=p.use_distributed_optimizer,
        sequence_parallel=p.sequence_parallel,
    )
