"""Step time of a layout: compute, TP/SP collectives, pipeline bubble and p2p, data-parallel reduce-scatter /
all-gather not hidden by overlap, optimizer step; then tokens/s, MFU and days to a token target.

Compute comes from the model family's training FLOPs per token (models/registry.py: for GPT decoders
models/gpt/counts.py's ``decoder_flops_per_token``, for Mamba2 models/mamba/counts.py's
``mamba_flops_per_token``: the formulas the MFU logging uses), plus the forward FLOPs recomputation repeats.
What differs by family beyond that (TP collectives per layer, the hidden states' element size) comes from
planning/terms.py. The achieved fraction of peak on the matmuls grows with the GEMMs'
contraction width, the hidden size ``h``, as ``efficiency_max x h / (h + width_half)`` (larger GEMMs have
higher arithmetic intensity, as Megatron-LM's weak-scaling table shows): the parameters per GPU
architecture were fitted on some published runs and checked on others (planning/calibration.py says which).
Collectives are ring algorithms at ``LINK_EFFICIENCY`` of the link bandwidth (a fixed assumption, not fitted).
"""

from __future__ import annotations

from dataclasses import dataclass

from megatron_biomed.config.model import ModelConfig
from megatron_biomed.models.registry import get_family
from megatron_biomed.planning.hardware import Cluster
from megatron_biomed.planning.layouts import Layout
from megatron_biomed.planning.memory import num_microbatches
from megatron_biomed.planning.terms import terms_for

# Fitted in planning/calibration.py (fit_efficiency): Hopper on Megatron-LM's 1.7B, 16B and 70B weak-scaling
# points, Ampere's efficiency_max on LLaMA-2 7B with Hopper's width_half. Refit there; a test checks these.
EFFICIENCY = {"hopper": 0.53, "ampere": 0.54}
WIDTH_HALF = 400.0
LINK_EFFICIENCY = 0.7  # achieved bus bandwidth / link bandwidth for NCCL rings
OPTIMIZER_BYTES_PER_PARAM = 36  # Adam step: read grad, param, m, v; write param, m, v, 16-bit copy
_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass
class StepTime:
    """Seconds per training step by term, and what follows from them."""

    terms: dict
    tokens_per_step: int
    world_size: int
    model_flops_per_token: float
    peak_flops: float

    @property
    def step_s(self) -> float:
        return sum(self.terms.values())

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / self.step_s

    @property
    def mfu(self) -> float:
        return self.tokens_per_s * self.model_flops_per_token / (self.world_size * self.peak_flops)

    def days(self, tokens: float) -> float:
        return tokens / self.tokens_per_s / 86400


def _ring(bytes_: float, ranks: int, bandwidth: float, kind: str) -> float:
    """Seconds of a ring collective on ``ranks`` ranks: all-reduce moves 2(n-1)/n of the data, reduce-scatter
    and all-gather (n-1)/n."""
    if ranks <= 1:
        return 0.0
    factor = 2 if kind == "all_reduce" else 1
    return factor * (ranks - 1) / ranks * bytes_ / (bandwidth * LINK_EFFICIENCY)


def gemm_efficiency(m: ModelConfig, layout: Layout, arch: str, efficiency: dict | None = None,
                    width_half: float | None = None) -> float:  # fmt: skip
    """Achieved fraction of peak FLOP/s on this layout's matmuls."""
    e = (efficiency or EFFICIENCY)[arch]
    w0 = WIDTH_HALF if width_half is None else width_half
    return e * m.hidden_size / (m.hidden_size + w0)


def estimate_step_time(
    m: ModelConfig,
    layout: Layout,
    cluster: Cluster,
    *,
    global_batch_size: int,
    precision: str = "bf16",
    grad_reduce_dtype: str = "fp32",
    tp_comm_overlap: bool = False,
    efficiency: dict | None = None,
    width_half: float | None = None,
) -> StepTime:
    """Seconds per step of ``layout`` on ``cluster``. ``tp_comm_overlap``: TP collectives hidden behind
    GEMMs (Transformer Engine's userbuffers) and pipeline p2p behind compute, as in Megatron-LM's published
    runs; our csrc path overlaps neither."""
    gpu = cluster.gpu
    e = _BYTES[precision]
    s, h, L = m.seq_length, m.hidden_size, m.num_layers
    tp, pp, dp, b = layout.tp, layout.pp, layout.dp, layout.micro_batch_size
    mb = num_microbatches(layout, global_batch_size)
    tokens_mb = s * b
    terms = terms_for(m)
    flops_model = get_family(m.family).flops_per_token(m)
    logits_train = 6 * m.vocab_size * h
    layers_train = (flops_model - logits_train) / L
    layer_fwd = layers_train / 3  # forward FLOPs per token of one layer (the family's formula: 3 x forward)
    if layout.recompute == "selective":
        extra = terms.selective_recompute_flops(m)  # GPT: core attention forward again
    elif layout.recompute == "full":
        chunks = pp * (layout.vpp or 1)
        per_chunk = L // chunks
        n = per_chunk if layout.recompute_num_layers is None else min(layout.recompute_num_layers, per_chunk)
        extra = layer_fwd * n / per_chunk
    else:
        extra = 0.0
    rate = gpu.peak_flops * gemm_efficiency(m, layout, gpu.arch, efficiency, width_half)
    # The slowest stage sets the pace: the last one also computes the logits.
    stage_flops = L / pp * (layers_train + extra) + logits_train
    t_compute_mb = tokens_mb * stage_flops / tp / rate
    # TP: per layer and micro-batch the family's all-reduces forward and backward (GPT: two each; SP: the same
    # bytes as all-gathers + reduce-scatters), the forward ones again when full recomputation reruns the layer.
    fwd, bwd = terms.tp_collectives_forward, terms.tp_collectives_backward
    n_ar = fwd + bwd + (fwd if layout.recompute == "full" else 0)
    tp_bw = cluster.group_bandwidth(tp, 1)
    t_tp_mb = 0.0 if tp_comm_overlap else L / pp * n_ar * _ring(e * tokens_mb * h, tp, tp_bw, "all_reduce")
    t_mb = t_compute_mb + t_tp_mb
    bubble = (pp - 1) / (layout.vpp or 1) * t_mb
    p2p_bytes = terms.hidden_bytes(e) * tokens_mb * h / (tp if layout.sequence_parallel else 1)
    pp_bw = cluster.group_bandwidth(pp, tp * dp)
    p2p = 2 * (mb + pp - 1) * (layout.vpp or 1) * p2p_bytes / (pp_bw * LINK_EFFICIENCY)
    if pp == 1 or tp_comm_overlap:
        p2p = 0.0
    # DP: gradients reduce-scattered (distributed optimizer) or all-reduced, parameters all-gathered.
    params = max(terms.stage_parameters(m, tp, pp, st).total for st in {0, pp - 1})
    grad_bytes = 4 if (grad_reduce_dtype == "fp32" or precision == "fp32") else 2
    dp_bw = cluster.group_bandwidth(dp, tp)
    if layout.distributed_optimizer:
        reduce = _ring(params * grad_bytes, dp, dp_bw, "reduce_scatter")
        gather = _ring(params * e, dp, dp_bw, "all_gather")
        # Overlapped: the reduce-scatter behind the last micro-batch's backward, the all-gather behind the
        # first micro-batch's forward (megatron-core's overlap_grad_reduce / overlap_param_gather).
        dp_exposed = max(0.0, reduce - 2 / 3 * t_mb) + max(0.0, gather - 1 / 3 * t_mb)
        opt_params = params / dp
    else:
        dp_exposed = _ring(params * grad_bytes, dp, dp_bw, "all_reduce")
        opt_params = params
    optimizer = opt_params * OPTIMIZER_BYTES_PER_PARAM / (gpu.hbm_bandwidth * LINK_EFFICIENCY)
    terms = {
        "compute": mb * t_compute_mb,
        "tp_comm": mb * t_tp_mb,
        "bubble": bubble,
        "pp_p2p": p2p,
        "dp_comm": dp_exposed,
        "optimizer": optimizer,
    }
    return StepTime(terms, global_batch_size * s, layout.world_size, flops_model, gpu.peak_flops)
