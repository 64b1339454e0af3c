"""Mamba2's state-space duality (SSD) scan in plain PyTorch, chunked, with resets at document boundaries.

The recurrence, per head ``h`` (``g(h)`` its B/C group, state ``[head_dim, d_state]``)::

    S_t = exp(dt_t * A_h) * S_{t-1} + dt_t * x_t B_t^T        y_t = S_t C_t + D_h * x_t

:func:`ssd_scan` computes it in chunks of ``chunk_size`` tokens (Dao & Gu 2024, "ssd_minimal"): quadratic
attention-like products inside a chunk, a linear recurrence over chunk-end states between chunks. With
``seq_idx`` (the document number of each position, non-decreasing along the sequence) a token sees nothing of
an earlier document: packed documents give the outputs of the same documents run separately.
:func:`ssd_reference` is the token-by-token recurrence the tests compare against; :func:`ssd_step` is one
decoding step on a cached state.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["causal_conv1d", "ssd_reference", "ssd_scan", "ssd_step"]


def _segsum(a: torch.Tensor) -> torch.Tensor:
    """``out[..., i, j] = sum(a[..., j+1 : i+1])`` for ``j <= i``, ``-inf`` above the diagonal (stable:
    a cumulative sum of masked copies, not a difference of cumulative sums)."""
    t = a.size(-1)
    a = a[..., None].expand(*a.shape, t)  # [..., i(k), j]
    below = torch.ones(t, t, dtype=torch.bool, device=a.device).tril(-1)
    s = a.masked_fill(~below, 0).cumsum(dim=-2)
    return s.masked_fill(~torch.ones(t, t, dtype=torch.bool, device=a.device).tril(0), float("-inf"))


def _heads(t: torch.Tensor, nheads: int) -> torch.Tensor:
    """[b, l, g, n] -> [b, l, h, n]: each group's B or C serves nheads / g consecutive heads."""
    g = t.size(2)
    return t if g == nheads else t.repeat_interleave(nheads // g, dim=2)


def ssd_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int,
    D: Optional[torch.Tensor] = None,
    seq_idx: Optional[torch.Tensor] = None,
    initial_state: Optional[torch.Tensor] = None,
    return_final_state: bool = False,
):
    """Chunked SSD scan.

    Args:
        x: ``[b, l, h, p]`` inputs per head; dt: ``[b, l, h]`` step sizes (after softplus and bias);
        A: ``[h]`` (negative); B, C: ``[b, l, g, n]`` with ``h % g == 0``; D: ``[h]`` skip, or None;
        seq_idx: ``[b, l]`` int document numbers (non-decreasing), or None for one document per row;
        initial_state: ``[b, h, p, n]`` state before the first token (it belongs to the first document).
    Returns ``y`` ``[b, l, h, p]`` (and the state after the last token, ``[b, h, p, n]``, if asked).
    Any ``l`` works: the tail chunk is padded with ``dt = 0`` tokens, which change no state.
    """
    b, length, h, p = x.shape
    g, n = B.size(2), B.size(-1)
    r = h // g  # heads per B/C group: B and C are used per group, never copied per head
    dtype = x.dtype
    pad = (-length) % chunk_size
    xdt = x * dt[..., None]
    adt = dt * A.to(dt.dtype)  # [b, l, h]
    if pad:
        xdt, B, C = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (xdt, B, C))
        adt = F.pad(adt, (0, 0, 0, pad))
        if seq_idx is not None:
            seq_idx = torch.cat([seq_idx, seq_idx[:, -1:].expand(b, pad)], dim=1)
    nc, cl = (length + pad) // chunk_size, chunk_size
    xdt = xdt.reshape(b, nc, cl, g, r, p)
    B = B.reshape(b, nc, cl, g, n)
    C = C.reshape(b, nc, cl, g, n)
    a = adt.reshape(b, nc, cl, g, r).permute(0, 3, 4, 1, 2)  # [b, g, r, c, l]
    a_cum = a.cumsum(dim=-1)

    # 1. Inside each chunk: y_t = sum_{s <= t} C_t.B_s exp(a_{s+1} + ... + a_t) x_s dt_s.
    decay = torch.exp(_segsum(a))  # [b, g, r, c, l, s]
    if seq_idx is not None:
        docs = seq_idx.reshape(b, nc, cl)
        decay = decay * (docs[:, None, None, :, :, None] == docs[:, None, None, :, None, :]).to(decay.dtype)
    scores = torch.einsum("bclgn,bcsgn->bgcls", C, B)[:, :, None] * decay  # [b, g, r, c, l, s]
    y = torch.einsum("bgrcls,bcsgrp->bclgrp", scores, xdt)

    # 2. Each chunk's own contribution to the state at its last token (same document as that token only).
    to_end = torch.exp(a_cum[..., -1:] - a_cum)  # [b, g, r, c, l]
    if seq_idx is not None:
        to_end = to_end * (docs == docs[..., -1:])[:, None, None].to(to_end.dtype)
    states = torch.einsum("bclgn,bgrcl,bclgrp->bcgrpn", B, to_end, xdt)

    # 3. Chunk-end states through the chunks: S_z = sum_{c <= z} exp(a over chunks c+1..z) states_c, across a
    #    chunk boundary only when both chunk ends lie in the same document.
    if initial_state is None:
        initial_state = torch.zeros(b, h, p, n, dtype=states.dtype, device=states.device)
    init = initial_state.to(states.dtype).reshape(b, 1, g, r, p, n)
    states = torch.cat([init, states], dim=1)  # [b, c+1, g, r, p, n]
    chunk_decay = torch.exp(_segsum(F.pad(a_cum[..., -1], (1, 0))))  # [b, g, r, c+1, c+1]
    if seq_idx is not None:
        ends = torch.cat([docs[:, :1, 0], docs[:, :, -1]], dim=1)  # document of the state after chunk z-1
        same = (ends[:, :, None] == ends[:, None, :]).to(chunk_decay.dtype)
        chunk_decay = chunk_decay * same[:, None, None]
    states = torch.einsum("bgrzc,bcgrpn->bzgrpn", chunk_decay, states)
    prev, final_state = states[:, :-1], states[:, -1].reshape(b, h, p, n)

    # 4. What the state before each chunk gives its tokens (only tokens of the document it belongs to).
    from_start = torch.exp(a_cum)  # [b, g, r, c, l]
    if seq_idx is not None:
        from_start = from_start * (docs == ends[:, :-1, None])[:, None, None].to(from_start.dtype)
    y = y + torch.einsum("bclgn,bcgrpn,bgrcl->bclgrp", C, prev, from_start)

    y = y.reshape(b, nc * cl, h, p)[:, :length]
    if D is not None:
        y = y + x * D.to(x.dtype)[:, None]
    y = y.to(dtype)
    return (y, final_state) if return_final_state else y


def ssd_reference(x, dt, A, B, C, D=None, seq_idx=None, initial_state=None, return_final_state=False):
    """The recurrence one token at a time (the test oracle); same arguments as :func:`ssd_scan`."""
    b, length, h, p = x.shape
    Bh, Ch = _heads(B, h), _heads(C, h)
    state = initial_state.clone() if initial_state is not None else x.new_zeros(b, h, p, B.size(-1))
    ys = []
    for t in range(length):
        if seq_idx is not None and t > 0:
            keep = (seq_idx[:, t] == seq_idx[:, t - 1]).to(x.dtype)
            state = state * keep[:, None, None, None]
        y, state = ssd_step(state, x[:, t], dt[:, t], A, Bh[:, t], Ch[:, t], D)
        ys.append(y)
    y = torch.stack(ys, dim=1)
    return (y, state) if return_final_state else y


def ssd_step(state, x, dt, A, B, C, D=None):
    """One token: ``state`` ``[b, h, p, n]``, x ``[b, h, p]``, dt ``[b, h]``, B and C ``[b, g, n]``.
    Returns (y ``[b, h, p]``, new state)."""
    h = x.size(1)
    B, C = _heads(B[:, None], h)[:, 0], _heads(C[:, None], h)[:, 0]
    decay = torch.exp(dt * A.to(dt.dtype))  # [b, h]
    state = state * decay[..., None, None] + (dt[..., None] * x)[..., None] * B[:, :, None, :]
    y = torch.einsum("bhpn,bhn->bhp", state, C)
    if D is not None:
        y = y + x * D.to(x.dtype)[:, None]
    return y, state


def causal_conv1d(x, weight, bias=None, seq_idx=None):
    """Depthwise causal convolution: x ``[b, d, l]``, weight ``[d, 1, k]`` (conv1d layout), bias ``[d]``.
    With ``seq_idx`` ``[b, l]`` a tap never reaches into an earlier document (as causal_conv1d's seq_idx)."""
    k = weight.size(-1)
    length = x.size(-1)
    if seq_idx is None:
        return F.conv1d(x, weight, bias, padding=k - 1, groups=x.size(1))[..., :length]
    w = weight[:, 0]  # [d, k]; tap j multiplies x[t - (k - 1 - j)]
    out = x * w[:, -1:]
    for shift in range(1, k):
        xs = F.pad(x, (shift, 0))[..., :length]
        same = seq_idx == F.pad(seq_idx, (shift, 0), value=-1)[:, :length]
        out = out + xs * w[:, k - 1 - shift, None] * same[:, None].to(x.dtype)
    return out + bias[:, None] if bias is not None else out
