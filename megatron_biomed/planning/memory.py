"""Memory per GPU of a layout: weights, gradients, optimizer states, activations, buffers, for any model family
with planner terms. :func:`estimate_memory` asks planning/terms.py's :func:`terms_for` for the family's per-layer
and per-stage terms (GPT decoders: planning/gpt_terms.py; Mamba2: planning/mamba_terms.py) and combines them the
same way for every family: layers per pipeline stage and model chunk, recomputation, micro-batches in flight,
16-bit weights, gradients in the reduce dtype, Adam states (split over DP by the distributed optimizer).

Under 1F1B the first pipeline stage holds ``min(PP, micro-batches)`` micro-batches in flight (Megatron-LM's
theoretical_memory_usage.py, with its interleaving penalty ``1 + (PP - 1) / (PP x VPP)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from megatron_biomed.config.model import ModelConfig
from megatron_biomed.planning.hardware import GiB
from megatron_biomed.planning.layouts import Layout
from megatron_biomed.planning.terms import StageParams, terms_for

TERMS = ("weights", "gradients", "optimizer", "activations", "buffers")
# CUDA context, NCCL communicators and allocator slack: not measured here (no GPU); Megatron-LM's
# estimator leaves them out too. 2 GiB is what a DGX process typically holds beyond its tensors.
RUNTIME_OVERHEAD_BYTES = 2 * GiB
_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def stage_parameters(m: ModelConfig, layout: Layout, stage: int) -> StageParams:
    """Parameters on one GPU of pipeline ``stage`` (0 = first), for any family with planner terms."""
    return terms_for(m).stage_parameters(m, layout.tp, layout.pp, stage)


@dataclass
class MemoryEstimate:
    """Bytes per GPU on the fullest pipeline stage, by term, and the limit they must fit in."""

    terms: dict
    stage: int
    capacity: float | None = None
    stages: dict = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.terms.values())

    @property
    def fits(self) -> bool:
        return self.capacity is None or self.total <= self.capacity

    def overflow(self) -> str | None:
        """Why it does not fit: the overflow and the term that dominates it (None when it fits)."""
        if self.fits:
            return None
        over = self.total - self.capacity
        term = max(self.terms, key=self.terms.get)
        hint = {
            "activations": "recompute (selective, then full), a smaller micro-batch, more TP with SP, or more PP",
            "optimizer": "the distributed optimizer, or more DP / TP / PP",
            "weights": "more TP or PP",
            "gradients": "more TP or PP",
            "buffers": "more TP",
        }[term]
        return (
            f"needs {self.total / GiB:.1f} GiB on pipeline stage {self.stage}, {over / GiB:.1f} GiB over the "
            f"{self.capacity / GiB:.1f} GiB of HBM; largest term: {term} {self.terms[term] / GiB:.1f} GiB "
            f"(reduce it with {hint})"
        )


def num_microbatches(layout: Layout, global_batch_size: int) -> int:
    return max(1, global_batch_size // (layout.micro_batch_size * layout.dp))


def estimate_memory(
    m: ModelConfig,
    layout: Layout,
    *,
    global_batch_size: int,
    precision: str = "bf16",
    grad_reduce_dtype: str = "fp32",
    capacity: float | None = None,
    runtime_overhead: float = RUNTIME_OVERHEAD_BYTES,
    mask_bytes: int = 1,
    fused_kernels: bool | None = None,
) -> MemoryEstimate:
    """Memory per GPU of ``layout`` for model ``m`` (the fullest pipeline stage), in bytes by term.

    ``runtime_overhead`` (CUDA context, NCCL, allocator) goes into ``buffers`` with the last stage's logits
    (16-bit, alive until the loss is computed); pass 0 to compare with what PyTorch tensors hold on CPU.
    ``fused_kernels``: None = what a GPU run of ``m`` uses (GPT: ``model.kernels``; mamba2: megatron-core's
    MambaMixer on mamba_ssm's fused scan), False = the PyTorch fallbacks (what runs on CPU)."""
    terms = terms_for(m, fused_kernels)
    e = _BYTES[precision]
    grad_bytes = 4 if (grad_reduce_dtype == "fp32" or precision == "fp32") else 2
    opt_bytes = 8 if precision == "fp32" else 12  # Adam m and v (+ fp32 main weights under 16-bit)
    opt_div = layout.dp if layout.distributed_optimizer else 1
    b, tp, sp = layout.micro_batch_size, layout.tp, layout.sequence_parallel
    chunks = layout.pp * (layout.vpp or 1)
    per_chunk = m.num_layers // chunks
    recomputed = per_chunk if layout.recompute_num_layers is None else min(layout.recompute_num_layers, per_chunk)
    kind = layout.recompute
    layer_bytes = terms.layer_activation_bytes
    if kind == "full":
        kept = per_chunk - recomputed
        per_chunk_bytes = recomputed * layer_bytes(m, b, tp, sp, "full", e) + kept * layer_bytes(
            m, b, tp, sp, "none", e, mask_bytes
        )
        if recomputed:
            per_chunk_bytes += terms.recomputed_chunk_extra_bytes(m, e)
    else:
        per_chunk_bytes = per_chunk * layer_bytes(m, b, tp, sp, kind, e, mask_bytes)
    per_stage_microbatch = per_chunk_bytes * (layout.vpp or 1)
    mb = num_microbatches(layout, global_batch_size)
    in_flight = min(layout.pp, mb)
    if layout.vpp:
        penalty = 1 + (layout.pp - 1) / (layout.pp * layout.vpp)
    else:
        penalty = 1.0
    stages = {}
    for stage in sorted({0, layout.pp - 1}):
        params = terms.stage_parameters(m, tp, layout.pp, stage).total
        flight = max(1, layout.pp - stage) if layout.pp > 1 else 1
        flight = min(flight, in_flight) if layout.pp > 1 else 1
        act = per_stage_microbatch * flight * (penalty if stage == 0 else 1.0)
        if stage == 0:
            act += flight * terms.first_stage_extra_bytes(m, b, tp, sp, e, mask_bytes)
        buffers = runtime_overhead
        if stage == layout.pp - 1:
            act += terms.last_stage_extra_bytes(m, b, tp, sp, e)
            if runtime_overhead:
                buffers += e * m.seq_length * b * m.padded_vocab_size(tp) / tp  # the logits themselves
        stages[stage] = {
            "weights": params * e,
            "gradients": params * grad_bytes,
            "optimizer": params * opt_bytes / opt_div,
            "activations": act,
            "buffers": buffers,
        }
    worst = max(stages, key=lambda k: sum(stages[k].values()))
    return MemoryEstimate(terms=stages[worst], stage=worst, capacity=capacity, stages=stages)
