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
  aligned (query i sees key j iff j <= i + seqlen_k - seqlen_q).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

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


class FlashAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, softmax_scale, causal, prims):
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        out, lse = prims.flash_attn_fwd(q, k, v, softmax_scale, causal)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.prims, ctx.softmax_scale, ctx.causal = prims, softmax_scale, causal
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = ctx.prims.flash_attn_bwd(dout.contiguous(), q, k, v, out, lse, ctx.softmax_scale, ctx.causal)
        return dq, dk, dv, None, None, None


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


def _torch_attention(q, k, v, causal: bool, softmax_scale: float) -> torch.Tensor:
    sq, h = q.shape[1], q.shape[2]
    sk, hkv = k.shape[1], k.shape[2]
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))  # [b, heads, s, d]
    if h != hkv:
        kt, vt = kt.repeat_interleave(h // hkv, dim=1), vt.repeat_interleave(h // hkv, dim=1)
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
    kernels: str = "csrc",
) -> torch.Tensor:
    """Attention ``softmax(scale * q k^T) v`` on ``[batch, seqlen, heads, head_dim]`` tensors."""
    prims = _primitives(kernels, q.device, "flash_attention")
    scale = 1.0 / math.sqrt(q.shape[-1]) if softmax_scale is None else float(softmax_scale)
    if prims is None:
        return _torch_attention(q, k, v, causal, scale)
    return FlashAttentionFunction.apply(q, k, v, scale, bool(causal), prims)
