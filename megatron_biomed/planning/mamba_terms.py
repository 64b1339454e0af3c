"""The planner's terms of the ``mamba2`` family (megatron-core HybridModel of Mamba2 layers, our PyTorch mixer),
registered as ``"mamba2"`` in planning/terms.py's table.

Parameters per rank come from models/mamba/counts.py's ``mamba_layer`` (the parameter count and the FLOPs
are made from it too): everything but the layer's pre-norm is split over TP (in_proj column parallel, out_proj
row parallel, conv, dt_bias / A_log / D and the gated norm by heads); no position embedding.

Activations are the tensors autograd saves in one layer's forward, written out one by one (checked against the
tensors really saved in tests/planning/test_memory_measured.py). Per micro-batch of ``b`` sequences of ``s``
tokens on one TP rank, with ``d`` = d_inner, ``H`` heads of ``p`` channels, ``g`` B/C groups of state ``n``
(all per TP rank), ``P`` = in_proj's width ``2d + 2gn + H``, ``Cd`` = the conv's channels ``d + 2gn``, chunks of
``c`` tokens and ``S`` = ``s`` rounded up to a whole number of chunks:

* the residual stream is fp32 (``fp32_residual_connection``, as mamba_ssm): the pre-norm saves its fp32 input,
  its fp32 normalised copy and the fp32 rstd; in_proj its input (16-bit); the conv the in_proj output (z, x, B,
  C, dt all live while any of them is saved), SiLU the conv output (``s + kernel - 1`` long);
* the chunked SSD scan (models/mamba/ssd.py) is fp32 whatever the training precision: per chunk the decay
  matrix and the C.B scores ``[c x c]`` per head (``b H S c`` elements each, twice), per-group copies of B and
  C that the einsums make, the ``x dt`` and ``B x decay`` operands, chunk states ``[p x n]`` per head;
* the gated RMSNorm (fp32): y, silu(z), their product, the normalised output and rstd; out_proj its input.

Hidden dropout is 0 in every Mamba2 preset and not counted. Full recomputation (megatron-core's
``checkpointed_forward`` in HybridStack) keeps a recomputed layer's fp32 input only; there is no core attention,
so selective recomputation changes nothing and is not searched. Sequence parallelism is not supported (the
family refuses it), and neither is TP > 1 for one B/C group (the public checkpoints): the layout search asks
the family's own layout rules.
"""

from __future__ import annotations

import math

from megatron_biomed.config.model import ModelConfig
from megatron_biomed.models.mamba.counts import mamba_dims, mamba_layer
from megatron_biomed.planning.terms import FamilyTerms

F32 = 4


class Mamba2Terms(FamilyTerms):
    """``fused``: megatron-core's MambaMixer on mamba_ssm's ``mamba_split_conv1d_scan_combined`` (what a GPU run
    with mamba_ssm builds; the default for planning) or our PyTorch mixer (False: what CPU runs build, and what
    the tests measure)."""

    recompute_kinds = ("none", "full")
    supports_sequence_parallel = False
    tp_collectives_forward = 1  # out_proj's all-reduce
    tp_collectives_backward = 1  # in_proj's input-gradient all-reduce

    def __init__(self, fused: bool = True):
        self.fused = fused

    def with_kernels(self, fused):
        return self if fused is None or fused == self.fused else Mamba2Terms(fused)

    def layer_parameters_per_rank(self, m: ModelConfig, tp: int) -> int:
        layer = mamba_layer(m)
        return layer.tp_split // tp + layer.norm

    def hidden_bytes(self, e: int) -> int:
        return F32  # fp32 residual stream between layers and stages

    def layer_activation_bytes(self, m, b, tp, sp, recompute, e, mask_bytes=1):
        s, h = m.seq_length, m.hidden_size
        tok = s * b
        if recompute == "full":
            return F32 * tok * h  # the layer's fp32 input
        k = mamba_dims(m)
        d, H, g, n = k.d_inner // tp, k.nheads // tp, k.ngroups // tp, k.d_state
        p = k.d_inner // k.nheads
        P, Cd = 2 * d + 2 * g * n + H, d + 2 * g * n
        norm = tok * (2 * F32 * h + F32)  # pre-norm: fp32 input and normalised copy, rstd
        proj_in = e * tok * (h + d)  # in_proj and out_proj inputs
        if self.fused:
            # mamba_split_conv1d_scan_combined saves its [b, s, P] input (a contiguous copy of in_proj's output)
            # and the scan output before gating (ssd_combined.py MambaSplitConv1dScanCombinedFn.forward); the
            # conv and chunk intermediates are recomputed in its backward. Then MambaMixer's group RMSNorm: its
            # input and rstd; A, dt_bias in fp32.
            return norm + proj_in + e * tok * (P + 2 * d) + F32 * (tok * g + 2 * H)
        c = m.mamba_chunk_size
        nc = math.ceil(s / c)
        S = nc * c
        padded, half = S != s, e < F32
        conv = e * tok * P + e * b * Cd * (s + k.d_conv - 1)  # in_proj output; conv output (SiLU's input)
        dt = F32 * (2 * tok * H + 2 * H)  # softplus input and output, -exp(A_log) and its exp
        # x (for x dt and the D skip): a view of the fp32 SiLU output, or an fp32 copy of x under 16-bit
        x = F32 * tok * (d if half else Cd)
        masks = 2 * c * c + 2 * (nc + 1) ** 2  # _segsum's boolean masks
        intra = F32 * b * S * (2 * H * c + g * c + 2 * g * n + H * p)  # decay, scores x decay, scores, C/B, x dt
        states = F32 * b * S * (H * n + H * p)  # B x to-end decay, x dt (chunk states)
        if padded or half:  # B as the states einsum holds it: a padded / fp32 copy rather than a view of x
            states += F32 * b * (S if padded else s) * g * n
        passing = F32 * b * H * ((nc + 1) ** 2 + (nc + 1) * p * n + nc * p * n)  # chunk decay, states in, prev
        out = F32 * b * S * (g * n + H * p)  # C copy and the from-start operand
        decays = 2 * F32 * b * H * S  # to-end and from-start exponentials
        skip = F32 * H if half else 0  # D in fp32
        gated = F32 * tok * (4 * d + g) + (F32 * (tok * d + d) if half else 0)  # fp32 z copy, weight in 16-bit
        return (norm + proj_in + conv + dt + x + masks + intra + states + passing + out + decays + skip
                + gated)  # fmt: skip

    def first_stage_extra_bytes(self, m, b, tp, sp, e, mask_bytes=1):
        return 8 * m.seq_length * b  # the token ids (the embedding's backward)

    def last_stage_extra_bytes(self, m, b, tp, sp, e):
        tok = m.seq_length * b
        final_norm = tok * (2 * F32 * m.hidden_size + F32) + (F32 * m.hidden_size if e < F32 else 0)
        return final_norm + e * tok * m.hidden_size + tok * (F32 * m.padded_vocab_size(tp) / tp + 1 + 8)
