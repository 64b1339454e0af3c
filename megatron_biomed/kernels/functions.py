"""Functional face of the fused ops, with autograd, for every ``kernels`` backend.

Each op asks the provider of ``kernels`` (kernels/registry.py) which backend runs it for its tensors'
device (``op_backend``) and runs that backend's ``primitives``: ``"csrc"`` and ``"emu"`` run the same
csrc kernels (CUDA ops / CPU emulator) through one set of autograd Functions; a provider without
primitives (``"torch"``, and ``"csrc"`` on CPU tensors) runs plain PyTorch with the same semantics
(the reference the kernel backends are compared with). Shapes:

* norms: ``x [..., hidden]``, normalised over the last dimension;
* softmax: scores ``[batch, heads, seqlen_q, seqlen_k]``, ``mask`` bool ``[batch or 1, 1, sq, sk]``
  with True = masked out (megatron's convention), softmax of ``scale * x`` in float32;
* flash attention: ``q [batch, seqlen_q, heads, head_dim]``, ``k, v [batch, seqlen_k, kv_heads,
  head_dim]`` (grouped-query attention when kv_heads < heads); causal masking is bottom-right
  aligned (query i sees key j iff j <= i + seqlen_k - seqlen_q). Any strides with a contiguous last
  dimension (megatron's ``[s, b, h, d]`` transposed to ``[b, s, h, d]`` is passed as it is); the output
  has q's layout. Attention dropout ``dropout_p`` draws the Philox mask of ``mbk/philox.cuh`` from
  ``(seed, offset)`` in every backend (kernels/philox.py in PyTorch), so all backends agree on it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from megatron_biomed.kernels import philox
from megatron_biomed.kernels.registry import provider_class


def _primitives(kernels: str, device: torch.device, op: str) -> Any:
    """What runs ``op`` on ``device`` for the choice ``kernels``: a provider's primitives, or None for PyTorch."""
    return provider_class(kernels).op_backend(device, op).primitives


# ---------------------------------------------------------------------------------------------
# autograd Functions (csrc / emu)


class LayerNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps, prims):
        x = x.contiguous()
        y, mean, rstd = prims.layer_norm_fwd(x, weight.contiguous(), None if bias is None else bias.contiguous(), eps)
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.prims, ctx.has_bias = prims, bias is not None
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, rstd = ctx.saved_tensors
        dx, dw, db = ctx.prims.layer_norm_bwd(dy.contiguous(), x, weight.contiguous(), mean, rstd)
        return dx, dw, (db if ctx.has_bias else None), None, None


class RMSNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps, prims):
        x = x.contiguous()
        y, rstd = prims.rms_norm_fwd(x, weight.contiguous(), eps)
        ctx.save_for_backward(x, weight, rstd)
        ctx.prims = prims
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, rstd = ctx.saved_tensors
        dx, dw = ctx.prims.rms_norm_bwd(dy.contiguous(), x, weight.contiguous(), rstd)
        return dx, dw, None, None


class ScaledSoftmaxFunction(torch.autograd.Function):
    """softmax(scale * x) with a padding mask (``causal=False``) or the causal mask (``causal=True``)."""

    @staticmethod
    def forward(ctx, x, mask, scale, causal, prims):
        x = x.contiguous()
        if causal:
            y = prims.scaled_causal_softmax_fwd(x, scale)
        else:
            y = prims.scaled_masked_softmax_fwd(x, None if mask is None else mask.contiguous(), scale)
        ctx.save_for_backward(y)
        ctx.prims, ctx.scale = prims, scale
        return y

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        return ctx.prims.scaled_softmax_bwd(dy.contiguous(), y, ctx.scale), None, None, None, None


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    # The kernels take any strides but a contiguous last dimension.
    return t if t.stride(-1) == 1 else t.contiguous()


class FlashAttentionFunction(torch.autograd.Function):
    """Flash attention on a provider's primitives; ``seed`` is a 64-bit value in int64 (the op schemas' int).
    The backward reruns the kernels' dropout from the saved ``(seed, offset)``: no mask is stored."""

    @staticmethod
    def forward(ctx, q, k, v, softmax_scale, causal, prims, dropout_p=0.0, seed=0, offset=0):
        q, k, v = (_last_dim_contiguous(t) for t in (q, k, v))
        out, lse = prims.flash_attn_fwd(q, k, v, softmax_scale, causal, dropout_p, seed, offset)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.prims, ctx.softmax_scale, ctx.causal = prims, softmax_scale, causal
        ctx.dropout = (dropout_p, seed, offset)
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = ctx.prims.flash_attn_bwd(
            _last_dim_contiguous(dout), q, k, v, out, lse, ctx.softmax_scale, ctx.causal, *ctx.dropout
        )
        return dq, dk, dv, None, None, None, None, None, None


# ---------------------------------------------------------------------------------------------
# functional API


def layer_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float = 1e-5, *, kernels: str = "csrc"
) -> torch.Tensor:
    """LayerNorm over the last dimension of ``x``."""
    prims = _primitives(kernels, x.device, "layer_norm")
    weight = weight.to(x.dtype)
    bias = None if bias is None else bias.to(x.dtype)
    if prims is None:
        return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)
    return LayerNormFunction.apply(x, weight, bias, eps, prims)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5, *, kernels: str = "csrc") -> torch.Tensor:
    """RMSNorm over the last dimension of ``x``: ``x / sqrt(mean(x^2) + eps) * weight``."""
    prims = _primitives(kernels, x.device, "rms_norm")
    weight = weight.to(x.dtype)
    if prims is None:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    return RMSNormFunction.apply(x, weight, eps, prims)


def _torch_softmax(x: torch.Tensor, mask: torch.Tensor | None, scale: float) -> torch.Tensor:
    # Fully masked rows give zeros, as the fused kernels do (a -inf fill would give NaN).
    s = x.float() * scale
    if mask is not None:
        s = s.masked_fill(mask, float("-inf"))
        s = torch.where(mask.all(dim=-1, keepdim=True), torch.zeros_like(s), s)
    y = torch.softmax(s, dim=-1)
    if mask is not None:
        y = y.masked_fill(mask, 0.0)
    return y.to(x.dtype)


def causal_mask(seqlen_q: int, seqlen_k: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Bool ``[1, 1, sq, sk]``, True where query i may not see key j (j > i + sk - sq)."""
    i = torch.arange(seqlen_q, device=device).view(-1, 1)
    j = torch.arange(seqlen_k, device=device).view(1, -1)
    return (j > i + (seqlen_k - seqlen_q)).view(1, 1, seqlen_q, seqlen_k)


def scaled_masked_softmax(
    x: torch.Tensor, mask: torch.Tensor | None, scale: float = 1.0, *, kernels: str = "csrc"
) -> torch.Tensor:
    """``softmax(scale * x)`` over the last dim, masked where ``mask`` is True (fully masked rows: 0)."""
    prims = _primitives(kernels, x.device, "scaled_masked_softmax")
    if prims is None:
        return _torch_softmax(x, mask, scale)
    return ScaledSoftmaxFunction.apply(x, mask, scale, False, prims)


def scaled_causal_softmax(x: torch.Tensor, scale: float = 1.0, *, kernels: str = "csrc") -> torch.Tensor:
    """``softmax(scale * x)`` with the causal (upper-triangular) mask; needs seqlen_q == seqlen_k."""
    prims = _primitives(kernels, x.device, "scaled_causal_softmax")
    if prims is None:
        return _torch_softmax(x, causal_mask(x.shape[-2], x.shape[-1], x.device), scale)
    return ScaledSoftmaxFunction.apply(x, None, scale, True, prims)


def _torch_attention(q, k, v, causal: bool, softmax_scale: float, dropout=(0.0, 0, 0)) -> torch.Tensor:
    sq, h = q.shape[1], q.shape[2]
    sk, hkv = k.shape[1], k.shape[2]
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))  # [b, heads, s, d]
    if h != hkv:
        kt, vt = kt.repeat_interleave(h // hkv, dim=1), vt.repeat_interleave(h // hkv, dim=1)
    dropout_p, seed, offset = dropout
    if dropout_p > 0.0:  # the kernels' Philox mask on explicit probabilities (SDPA draws its own)
        s = torch.matmul(qt.float(), kt.float().transpose(-1, -2)) * softmax_scale
        if causal:  # rows that see no key: zeros (a softmax of zeros, multiplied away), not NaN
            allowed = ~causal_mask(sq, sk, q.device)
            empty = ~allowed.any(dim=-1, keepdim=True)
            s = s.masked_fill(~allowed & ~empty, float("-inf"))
        probs = torch.softmax(s, dim=-1)
        if causal:
            probs = probs.masked_fill(empty, 0.0)
        probs = philox.apply_dropout(probs, dropout_p, seed, offset)
        return torch.matmul(probs, vt.float()).to(q.dtype).transpose(1, 2)
    if causal and sq != sk:  # SDPA's is_causal is top-left aligned; ours is bottom-right
        allowed = ~causal_mask(sq, sk, q.device)
        out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=allowed, scale=softmax_scale)
        out = out.masked_fill(~allowed.any(dim=-1, keepdim=True), 0.0)  # rows that see no key
    else:
        out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal, scale=softmax_scale)
    return out.transpose(1, 2)


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    softmax_scale: float | None = None,
    dropout_p: float = 0.0,
    seed: int | None = None,
    offset: int = 0,
    kernels: str = "csrc",
) -> torch.Tensor:
    """Attention ``dropout(softmax(scale * q k^T)) v`` on ``[batch, seqlen, heads, head_dim]`` tensors.

    ``dropout_p > 0``: the Philox mask of ``(seed, offset)`` (``seed`` in [0, 2^64), ``offset`` in
    [0, 2^32)); without a seed one is drawn from the device's current generator
    (``philox.draw_seed_offset``). The same seed and offset give the same mask in every backend.
    """
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"flash_attention: dropout_p={dropout_p} must be in [0, 1]")
    prims = _primitives(kernels, q.device, "flash_attention")
    scale = 1.0 / math.sqrt(q.shape[-1]) if softmax_scale is None else float(softmax_scale)
    dropout_p = float(dropout_p)
    if dropout_p > 0.0 and seed is None:
        seed, offset = philox.draw_seed_offset(q.device)
    seed = 0 if seed is None else seed
    if prims is None:
        return _torch_attention(q, k, v, causal, scale, (dropout_p, seed, offset))
    return FlashAttentionFunction.apply(
        q, k, v, scale, bool(causal), prims, dropout_p, philox.seed_as_int64(seed), int(offset)
    )
