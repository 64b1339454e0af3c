"""Parallel layout configuration: tensor, pipeline (and virtual pipeline), data, sequence parallel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# ParallelConfig.grad_reduce_dtype choices.
GRAD_REDUCE_DTYPES = ("fp32", "bf16")


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
    # With the distributed optimizer: all-gather the updated parameters during the next forward (bucket by
    # bucket, as each module needs them) instead of at the end of the optimizer step. Needs overlap_grad_reduce.
    overlap_param_gather: bool = False
    # Dtype of the gradient buffers, and so of the data-parallel reduce: "fp32" (default) or "bf16" (half the
    # reduce bytes; needs train.precision=bf16).
    grad_reduce_dtype: str = "fp32"
    # Batched isend/irecv for pipeline p2p. On gloo it gives wrong results with virtual PP
    # (see megatron_biomed/parallel/cpu.py); config validation refuses that combination.
    batch_p2p_comm: bool = False
    # "auto": nccl when CUDA is available, else gloo.
    backend: str = "auto"
    # Seconds to wait for the other ranks when creating the process group.
    init_timeout_s: int = 600
    # Seconds a collective waits for the other ranks before it fails (every process group, ours and
    # megatron-core's): a rank that died or hangs ends the others' wait after this long, not never.
    collective_timeout_s: int = 1800
