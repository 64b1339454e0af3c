"""Parallel layout configuration: tensor, pipeline (and virtual pipeline), data, sequence parallel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class ParallelConfig:
    """How the model is split over ranks. Data parallel size is what is left of the world size."""

    tensor_model_parallel_size: int = 1
    pipeline_model_parallel_size: int = 1
    # Interleaved (virtual) pipeline: model chunks per pipeline rank; None = plain 1F1B.
    virtual_pipeline_model_parallel_size: Optional[int] = None
    sequence_parallel: bool = False
    use_distributed_optimizer: bool = False
    overlap_grad_reduce: bool = False
    # Batched isend/irecv for pipeline p2p. On gloo it gives wrong results with virtual PP
    # (see megatron_biomed/parallel/cpu.py); config validation refuses that combination.
    batch_p2p_comm: bool = False
    # "auto": nccl when CUDA is available, else gloo.
    backend: str = "auto"
    # Seconds to wait for the other ranks when creating the process group.
    init_timeout_s: int = 600
