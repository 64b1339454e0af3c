"""The planner's terms of the GPT decoder families (``gpt2``, ``llama``: megatron-core GPTModel decoders),
registered in planning/terms.py's table: :class:`GPTTerms` and the per-layer formulas it is made of.

Parameters per rank come from the same per-layer matrices as models/gpt/counts.py (``decoder_layer``),
split the way megatron-core splits them (column/row-parallel matrices and column biases divided by TP,
row-parallel biases and norms replicated, the embedding on the first pipeline stage and the output layer,
or the tied copy of the embedding, on the last).

Activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
Models", Table 2: ``s b h (34 + 5 a s / h)`` bytes per layer in 16-bit with dropout, ``/t`` with TP + SP,
``2 s b h`` with full recomputation), written out tensor by tensor so that GQA, SwiGLU, RoPE, no dropout,
fp32 activations and the kernels choice are counted as megatron-core saves them (checked against the
tensors really saved for backward in tests/planning/test_memory_measured.py).
"""

from __future__ import annotations

from megatron_biomed.config.model import ModelConfig
from megatron_biomed.kernels.registry import provider_class
from megatron_biomed.models.gpt.counts import decoder_layer, norm_parameters
from megatron_biomed.planning.terms import FamilyTerms


def layer_parameters_per_rank(m: ModelConfig, tp: int) -> int:
    """One decoder layer's parameters on one TP rank."""
    d = decoder_layer(m)
    row_biases = 2 * m.hidden_size if m.add_bias_linear else 0  # proj and fc2 biases, replicated
    return (d.matmul + d.biases - row_biases) // tp + row_biases + d.norms


def _norm_bytes(m: ModelConfig, tokens: float, e: int) -> float:
    """What one norm saves: its input (the PyTorch RMSNorm also its normalised output) and fp32 statistics."""
    saved_copies = 2 if (m.normalization == "RMSNorm" and not provider_class(m.kernels).fused_norms) else 1
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
    fused = provider_class(m.kernels).fused_attention  # flash attention and fused activations (csrc, te)
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
    if not provider_class(m.kernels).fused_softmax:
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
