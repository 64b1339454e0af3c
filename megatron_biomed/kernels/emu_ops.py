"""The ``"emu"`` backend's primitives: the csrc kernels run by ``megatron_biomed._emu`` on CPU tensors.

Same primitives (names, arguments, results) as the ``"csrc"`` ops in ``csrc_ops.py``, so the autograd
Functions in ``functions.py`` run either unchanged. ``_emu`` works on numpy arrays: float32 and
float16 as themselves, bfloat16 as uint16 bit patterns (numpy has no bfloat16).
"""

from __future__ import annotations

import numpy as np
import torch

from megatron_biomed.kernels.csrc_ops import empty_in_layout_of
from megatron_biomed.kernels.philox import MASK64

_DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def _module():
    import megatron_biomed._emu as emu  # optional build (pybind11 + g++); load_error() says why it is missing

    return emu


def load_error() -> str | None:
    """None if ``megatron_biomed._emu`` imports, else why not and how to build it."""
    try:
        _module()
    except ImportError as e:
        return (
            f"megatron_biomed._emu (the CPU emulator of the csrc kernels) is not built ({e}); "
            "build it with `pip install --no-build-isolation -e .` or `python setup.py build_ext --inplace`"
        )
    return None


def _dtype_name(t: torch.Tensor, op: str) -> str:
    try:
        return _DTYPE_NAMES[t.dtype]
    except KeyError:
        raise RuntimeError(f"{op}: dtype {t.dtype} is not one of {tuple(_DTYPE_NAMES)}") from None


def to_numpy(t: torch.Tensor | None, *, keep_strides: bool = False) -> np.ndarray | None:
    """``t`` as a numpy array (bfloat16 as uint16 bits); contiguous unless ``keep_strides`` (a view then)."""
    if t is None:
        return None
    t = t.detach()
    if not keep_strides or t.stride(-1) != 1:
        t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def from_numpy(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    a = np.ascontiguousarray(a)
    if dtype == torch.bfloat16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a).to(dtype)


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1])


# ---- norms: x [..., hidden] -------------------------------------------------------------------


def layer_norm_fwd(x, weight, bias, eps):
    name = _dtype_name(x, "layer_norm_fwd")
    y, mean, rstd = _module().layer_norm_fwd(to_numpy(_rows(x)), to_numpy(weight), to_numpy(bias), float(eps), name)
    stats = x.shape[:-1]
    return from_numpy(y, x.dtype).view(x.shape), torch.from_numpy(mean).view(stats), torch.from_numpy(rstd).view(stats)


def layer_norm_bwd(dy, x, weight, mean, rstd):
    name = _dtype_name(x, "layer_norm_bwd")
    dx, dw, db = _module().layer_norm_bwd(
        to_numpy(_rows(dy)),
        to_numpy(_rows(x)),
        to_numpy(weight),
        to_numpy(mean.reshape(-1)),
        to_numpy(rstd.reshape(-1)),
        name,
        True,
    )
    return from_numpy(dx, x.dtype).view(x.shape), from_numpy(dw, x.dtype), from_numpy(db, x.dtype)


def rms_norm_fwd(x, weight, eps):
    name = _dtype_name(x, "rms_norm_fwd")
    y, rstd = _module().rms_norm_fwd(to_numpy(_rows(x)), to_numpy(weight), float(eps), name)
    return from_numpy(y, x.dtype).view(x.shape), torch.from_numpy(rstd).view(x.shape[:-1])


def rms_norm_bwd(dy, x, weight, rstd):
    name = _dtype_name(x, "rms_norm_bwd")
    dx, dw = _module().rms_norm_bwd(
        to_numpy(_rows(dy)), to_numpy(_rows(x)), to_numpy(weight), to_numpy(rstd.reshape(-1)), name
    )
    return from_numpy(dx, x.dtype).view(x.shape), from_numpy(dw, x.dtype)


# ---- flash attention: q [b, s_q, h, d], k/v [b, s_k, h_kv, d] ----------------------------------


def _in_layout_of(like: torch.Tensor, a: np.ndarray) -> torch.Tensor:
    """The kernel's contiguous result, placed in the layout the csrc op allocates (``empty_in_layout_of``)."""
    return empty_in_layout_of(like).copy_(from_numpy(a, like.dtype))


def flash_attn_fwd(q, k, v, softmax_scale, causal, dropout_p=0.0, seed=0, offset=0):
    name = _dtype_name(q, "flash_attn_fwd")
    out, lse = _module().flash_attention_fwd(
        *(to_numpy(t, keep_strides=True) for t in (q, k, v)),
        causal=bool(causal),
        softmax_scale=float(softmax_scale),
        dtype=name,
        dropout_p=float(dropout_p),
        seed=int(seed) & MASK64,
        offset=int(offset),
    )
    return _in_layout_of(q, out), torch.from_numpy(np.ascontiguousarray(lse))


def flash_attn_bwd(dout, q, k, v, out, lse, softmax_scale, causal, dropout_p=0.0, seed=0, offset=0):
    name = _dtype_name(q, "flash_attn_bwd")
    dq, dk, dv = _module().flash_attention_bwd(
        *(to_numpy(t, keep_strides=True) for t in (q, k, v, out, dout)),
        to_numpy(lse),
        causal=bool(causal),
        softmax_scale=float(softmax_scale),
        dtype=name,
        dropout_p=float(dropout_p),
        seed=int(seed) & MASK64,
        offset=int(offset),
    )
    return _in_layout_of(q, dq), _in_layout_of(k, dk), _in_layout_of(v, dv)


# ---- fused softmax: x [b, h, sq, sk] ------------------------------------------------------------


def scaled_masked_softmax_fwd(x, mask, scale):
    name = _dtype_name(x, "scaled_masked_softmax_fwd")
    m = None if mask is None else mask.detach().contiguous().numpy()
    return from_numpy(_module().scaled_masked_softmax_fwd(to_numpy(x), m, float(scale), name), x.dtype)


def scaled_causal_softmax_fwd(x, scale):
    name = _dtype_name(x, "scaled_causal_softmax_fwd")
    b, h, sq, sk = x.shape
    if sq != sk:
        raise RuntimeError(f"scaled_causal_softmax_fwd: causal softmax needs seqlen_q == seqlen_k, got {sq} and {sk}")
    y = _module().scaled_upper_triang_softmax_fwd(to_numpy(x.reshape(b * h, sq, sk)), float(scale), name)
    return from_numpy(y, x.dtype).view(x.shape)


def scaled_softmax_bwd(dy, y, scale):
    name = _dtype_name(y, "scaled_softmax_bwd")
    return from_numpy(_module().scaled_softmax_bwd(to_numpy(dy), to_numpy(y), float(scale), name), y.dtype).view(
        y.shape
    )
