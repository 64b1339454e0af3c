"""Memory per GPU of a layout: weights, gradients, optimizer states, activations, buffers; and the terms of the
GPT decoder families (``gpt2``, ``llama``: :class:`GPTTerms`). Other families' terms (Mamba2: planning/mamba.py)
plug in through planning/terms.py; :func:`estimate_memory` combines any family's the same way.

Parameters per rank come from the same per-layer matrices as config/param_count.py (``decoder_layer``),
split the way megatron-core splits them (column/row-parallel matrices and column biases divided by TP,
row-parallel biases and norms replicated, the embedding on the first pipeline stage and the output layer,
or the tied copy of the embedding, on the last).

Activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
Models", Table 2: ``s b h (34 + 5 a s / h)`` bytes per layer in 16-bit with dropout, ``/t`` with TP + SP,
``2 s b h`` with full recomputation), written out tensor by tensor so that GQA, SwiGLU, RoPE, no dropout,
fp32 activations and the kernels choice are counted as megatron-core saves them (checked against the
tensors really saved for backward in tests/planning/test_memory_measured.py). Under 1F1B the first
pipeline stage holds ``min(PP, micro-batches)`` micro-batches in flight (Megatron-LM's
theoretical_memory_usage.py, with its interleaving penalty ``1 + (PP - 1) / (PP x VPP)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from megatron_biomed.config.model import ModelConfig
from megatron_biomed.config.param_count import decoder_layer, norm_parameters
from megatron_biomed.planning.hardware import GiB
from megatron_biomed.planning.layouts import Layout
from megatron_biomed.planning.terms import (  # noqa: F401  (UnsupportedModel, check_supported: re-exported)
    FamilyTerms,
    StageParams,
    UnsupportedModel,
    check_supported,
    register_terms,
    terms_for,
)

TERMS = ("weights", "gradients", "optimizer", "activations", "buffers")
# CUDA context, NCCL communicators and allocator slack: not measured here (no GPU); Megatron-LM's
# estimator leaves them out too. 2 GiB is what a DGX process typically holds beyond its tensors.
RUNTIME_OVERHEAD_BYTES = 2 * GiB
_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def layer_parameters_per_rank(m: ModelConfig, tp: int) -> int:
    """One decoder layer's parameters on one TP rank."""
    d = decoder_layer(m)
    row_biases = 2 * m.hidden_size if m.add_bias_linear else 0  # proj and fc2 biases, replicated
    return (d.matmul + d.biases - row_biases) // tp + row_biases + d.norms


def stage_parameters(m: ModelConfig, layout: Layout, stage: int) -> StageParams:
    """Parameters on one GPU of pipeline ``stage`` (0 = first), for any family with planner terms."""
    return terms_for(m).stage_parameters(m, layout.tp, layout.pp, stage)


def _norm_bytes(m: ModelConfig, tokens: float, e: int) -> float:
    """What one norm saves: its input (the PyTorch RMSNorm also its normalised output) and fp32 statistics."""
    saved_copies = 2 if (m.normalization == "RMSNorm" and m.kernels == "torch") else 1
    stats = 2 if m.normalization == "LayerNorm" else 1
    return tokens * (e * m.hidden_size * saved_copies + 4 * stats)


def layer_activation_bytes(
    m: ModelConfig, b: int, tp: int, sp: bool, recompute: str, e: int, mask_bytes: int = 1
) -> float:
    """Bytes one decoder layer saves for backward for one micro-batch of ``b`` sequences on one TP rank
    (``recompute``: "none" | "selective" | "full", the last meaning this layer is recomputed).
    ``mask_bytes``: one dropout mask element (1 on CUDA; PyTorch's CPU dropout keeps it in the
    activation dtype)."""
    s, h, a = m.seq_length, m.hidden_size, m.num_attention_heads
    hd = h // a
    kvw = m.kv_heads * hd
    sp_div = tp if sp else 1
    tokens = s * b  # per micro-batch
    if recompute == "full":
        return e * tokens * h / sp_div  # the layer's input only
    dropout_h = m.hidden_dropout > 0
    dropout_a = m.attention_dropout > 0
    fused = m.kernels != "torch"  # flash attention and fused norms / activations (csrc, te)
    rope = m.position_embedding_type == "rope"
    expand = m.kv_heads < a and not fused  # the PyTorch attention repeats K and V to every head
    # Columns of q / k / v held by one TP rank, and whether each is a fresh tensor or a view of the fused
    # QKV projection's output (then that whole output stays alive).
    q_new, k_new, v_new = rope, rope, False
    widths = {"q": h, "k": kvw, "v": kvw}
    if recompute == "none" and not fused:  # the tensors the score and value products save
        if expand:
            k_new, v_new = True, True
            widths.update(k=h, v=h)
    cols = sum(w for name, w in widths.items() if {"q": q_new, "k": k_new, "v": v_new}[name])
    if not (q_new and k_new and v_new):
        cols += h + 2 * kvw
    attn = e * tokens * cols / tp
    if rope:
        attn += 4 * e * s * hd  # cos / sin tables for q and k
    heads = a // tp
    if recompute == "none" and not fused:
        attn += e * b * heads * s * s  # softmax output
        if dropout_a:
            attn += b * heads * s * s * (mask_bytes + e)  # dropout mask and the dropped probabilities
    if fused:
        attn += 4 * b * heads * s  # flash attention's log-sum-exp
    attn += e * tokens * h / tp  # context: the output projection's input
    attn += e * tokens * h / sp_div  # QKV projection input (norm output)
    f = m.ffn_size // tp
    act = (3 if fused else 5) if m.activation == "swiglu" else 2  # GELU: fc1 output and fc2 input
    mlp = e * tokens * h / sp_div + act * e * tokens * f  # fc1 input, activation tensors
    norms = 2 * _norm_bytes(m, tokens / sp_div, e)
    masks = 2 * mask_bytes * tokens * h / sp_div if dropout_h else 0
    return attn + mlp + norms + masks


def first_stage_extra_bytes(m: ModelConfig, b: int, tp: int, sp: bool, e: int, mask_bytes: int = 1) -> float:
    """Embedding inputs (token and position ids), the embedding dropout mask and the attention mask."""
    tokens = m.seq_length * b
    extra = 8 * tokens * (2 if m.position_embedding_type == "learned_absolute" else 1)
    if m.hidden_dropout > 0:
        extra += mask_bytes * tokens * m.hidden_size / (tp if sp else 1)
    if m.kernels == "torch":
        extra += m.seq_length**2  # boolean causal mask
    return extra


def last_stage_extra_bytes(m: ModelConfig, b: int, tp: int, sp: bool, e: int) -> float:
    """Final norm, the output layer's input, and the cross entropy's fp32 softmax, mask and targets."""
    tokens = m.seq_length * b
    sp_div = tp if sp else 1
    return (
        _norm_bytes(m, tokens / sp_div, e)
        + e * tokens * m.hidden_size / sp_div
        + tokens * (4 * m.padded_vocab_size(tp) / tp + 1 + 8)
    )


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


class GPTTerms(FamilyTerms):
    """megatron-core GPTModel decoders (models/registry.py GPTFamily): the functions above."""

    tp_collectives_forward = 2  # attention and MLP output all-reduces (SP: the same bytes as AG + RS)
    tp_collectives_backward = 2

    def layer_parameters_per_rank(self, m, tp):
        return layer_parameters_per_rank(m, tp)

    def embedding_parameters_per_rank(self, m, tp):
        pos = m.seq_length * m.hidden_size if m.position_embedding_type == "learned_absolute" else 0
        return m.padded_vocab_size(tp) * m.hidden_size // tp + pos

    def final_norm_parameters(self, m):
        return norm_parameters(m)

    def layer_activation_bytes(self, m, b, tp, sp, recompute, e, mask_bytes=1):
        return layer_activation_bytes(m, b, tp, sp, recompute, e, mask_bytes)

    def recomputed_chunk_extra_bytes(self, m, e):
        if m.position_embedding_type == "rope":
            # the rotary frequencies (fp32), an input of every recomputed layer, one tensor per forward
            return 4 * m.seq_length * (m.hidden_size // m.num_attention_heads)
        return 0.0

    def first_stage_extra_bytes(self, m, b, tp, sp, e, mask_bytes=1):
        return first_stage_extra_bytes(m, b, tp, sp, e, mask_bytes)

    def last_stage_extra_bytes(self, m, b, tp, sp, e):
        return last_stage_extra_bytes(m, b, tp, sp, e)

    def selective_recompute_flops(self, m):
        return 4 * m.seq_length * m.hidden_size  # core attention: scores and values again


register_terms("gpt2", GPTTerms())
register_terms("llama", GPTTerms())
