"""Philox4x32-10 and the attention-dropout mask of ``csrc/include/mbk/philox.cuh``, in PyTorch.

Bit-identical to the C++ (tests/kernels/test_philox.py checks it against the C++ functions and
Random123's known-answer vectors), so the unfused attention paths draw exactly the mask the fused
flash kernels draw for the same ``(seed, offset)``. Arithmetic is vectorised int64: a 32 x 32-bit
product is split into 16-bit halves so nothing overflows.

Mask of element (b, h, i, j) (batch, query head, query row, key column) for a call with (seed, offset):
``key = (lo32(seed), hi32(seed))``, ``counter = (j // 4, i, b * heads + h, offset)``; word ``j % 4``
of the result is column j's draw; kept iff ``draw >= dropout_threshold(p)``; kept values are
scaled by ``dropout_scale(p)``.

:func:`draw_seed_offset` gives the ``(seed, offset)`` of one dropout call from a device's current
generator without a device synchronisation (see its docstring for the RNG convention).
"""

from __future__ import annotations

import numpy as np
import torch

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1
_M0, _M1 = 0xD2511F53, 0xCD9E8D57  # Random123's Philox4x32 multipliers
_W0, _W1 = 0x9E3779B9, 0xBB67AE85  # and its Weyl key increments
_ROUNDS = 10


def _mulhilo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(hi32(a * b), lo32(a * b))`` for a 32-bit constant ``a`` and int64 tensors ``b`` in [0, 2^32)."""
    x = a * (b >> 16)  # < 2^48
    y = a * (b & 0xFFFF)  # < 2^48
    t = ((x & 0xFFFF) << 16) + y  # a * b = (x >> 16) * 2^32 + t, t < 2^49
    return (x >> 16) + (t >> 32), t & MASK32


def philox4x32_10(c0, c1, c2, c3, k0, k1) -> tuple[torch.Tensor, ...]:
    """Philox4x32 with 10 rounds on int64 tensors (or ints) holding 32-bit words; returns 4 int64 tensors."""
    cs = torch.broadcast_tensors(*(torch.as_tensor(c, dtype=torch.int64) for c in (c0, c1, c2, c3, k0, k1)))
    c0, c1, c2, c3, k0, k1 = (c & MASK32 for c in cs)
    for _ in range(_ROUNDS):
        hi0, lo0 = _mulhilo(_M0, c0)
        hi1, lo1 = _mulhilo(_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + _W0) & MASK32
        k1 = (k1 + _W1) & MASK32
    return c0, c1, c2, c3


def dropout_threshold(p: float) -> int:
    """The integer a 32-bit draw is compared with: ``min(round(p * 2^32), 2^32 - 1)`` of p as float32."""
    t = float(np.float32(p)) * 4294967296.0 + 0.5
    return MASK32 if t >= 4294967295.0 else (0 if t <= 0.0 else int(t))


def dropout_scale(p: float) -> float:
    """Scale of kept elements, ``1 / (1 - p)`` in float32 arithmetic (0 for p = 1), as the kernels use it."""
    p32 = np.float32(p)
    return float(np.float32(1.0) / (np.float32(1.0) - p32)) if p32 < 1 else 0.0


def _check_seed_offset(seed: int, offset: int) -> tuple[int, int]:
    if not -(1 << 63) <= int(seed) <= MASK64:
        raise ValueError(f"dropout seed {seed} must fit 64 bits")
    if not 0 <= int(offset) <= MASK32:
        raise ValueError(f"dropout offset {offset} must be in [0, 2^32)")
    return int(seed) & MASK64, int(offset)


def dropout_bits(seed: int, offset: int, bh, i, j) -> torch.Tensor:
    """The 32-bit draw (int64 tensor) of elements ``(bh, i, j)`` (broadcast int tensors), bh = b * heads + h."""
    seed, offset = _check_seed_offset(seed, offset)
    bh, i, j = torch.broadcast_tensors(*(torch.as_tensor(x, dtype=torch.int64) for x in (bh, i, j)))
    words = philox4x32_10(j >> 2, i, bh, offset, seed & MASK32, seed >> 32)
    return torch.stack(words, dim=-1).gather(-1, (j & 3).unsqueeze(-1)).squeeze(-1)


def dropout_keep(seed: int, offset: int, threshold: int, bh, i, j) -> torch.Tensor:
    """Whether elements ``(bh, i, j)`` are kept (bool tensor), as ``mbk::dropout_keep``."""
    return dropout_bits(seed, offset, bh, i, j) >= int(threshold)


def dropout_keep_mask(
    seed: int,
    offset: int,
    p: float,
    batch: int,
    heads: int,
    seqlen_q: int,
    seqlen_k: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Bool ``[batch, heads, seqlen_q, seqlen_k]``: True where the fused kernels keep a probability.

    One Philox call per 4 columns (the 4 words are the 4 columns), so this costs
    ``batch * heads * seqlen_q * ceil(seqlen_k / 4)`` Philox evaluations in int64 temporaries.
    """
    seed, offset = _check_seed_offset(seed, offset)
    threshold = dropout_threshold(p)
    groups = (seqlen_k + 3) // 4
    bh = torch.arange(batch * heads, device=device, dtype=torch.int64).view(-1, 1, 1)
    i = torch.arange(seqlen_q, device=device, dtype=torch.int64).view(1, -1, 1)
    g = torch.arange(groups, device=device, dtype=torch.int64).view(1, 1, -1)
    words = philox4x32_10(g, i, bh, offset, seed & MASK32, seed >> 32)
    bits = torch.stack(words, dim=-1).reshape(batch * heads, seqlen_q, groups * 4)[..., :seqlen_k]
    return (bits >= threshold).view(batch, heads, seqlen_q, seqlen_k)


def apply_dropout(probs: torch.Tensor, p: float, seed: int, offset: int) -> torch.Tensor:
    """``probs [batch, heads, sq, sk]`` with the fused kernels' dropout: dropped -> 0, kept * 1 / (1 - p)."""
    b, h, sq, sk = probs.shape
    keep = dropout_keep_mask(seed, offset, p, b, h, sq, sk, probs.device)
    return probs * keep.to(probs.dtype) * dropout_scale(p)


def draw_seed_offset(device: torch.device | str) -> tuple[int, int]:
    """``(seed, offset)`` of one dropout call, drawn from ``device``'s current default generator on the host.

    CUDA: like PyTorch's own fused dropout, the Philox key is the generator's seed and the counter
    offset its Philox offset, which is advanced (by 4, PyTorch's granularity) so the next call draws
    fresh numbers. The generator state lives on the host: no device synchronisation. Inside
    megatron-core's ``get_cuda_rng_tracker().fork()`` that generator holds the model-parallel state,
    so the tracker's checkpointed states (and activation recomputation, which restores them) replay
    the same masks. The kernel offset is the generator offset / 4 modulo 2^32.
    CPU (tests, the emulator): a 63-bit seed drawn from the CPU default generator (which the CPU
    tracker forks the same way), offset 0.
    """
    device = torch.device(device)
    if device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        gen = torch.cuda.default_generators[index]
        offset = gen.get_offset()
        gen.set_offset(offset + 4)
        return gen.initial_seed() & MASK64, (offset // 4) & MASK32
    return int(torch.randint(0, (1 << 63) - 1, (), dtype=torch.int64).item()), 0


def seed_as_int64(seed: int) -> int:
    """A 64-bit seed in [0, 2^64) as the signed int64 the op schemas take (same bits)."""
    seed = int(seed) & MASK64
    return seed - (1 << 64) if seed >= (1 << 63) else seed
