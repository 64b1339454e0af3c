"""The flash-attention entry points pick the kernels: half/bf16 calls whose tensors suit the tensor-core kernels
(16-byte aligned, strides multiples of 8 elements) run them -- bit for bit what the tensor-core launchers give --
and other layouts fall back to the scalar kernels with the same semantics (csrc/kernels/flash_attention_launch.h)."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from megatron_biomed.kernels.emu_ops import from_numpy, to_numpy


def fresh_seed() -> int:
    return int(os.environ.get("MBK_TEST_SEED", random.SystemRandom().randrange(2**31)))


def reference(q, k, v, causal, scale):
    """float64 attention (out [B, Sq, H, D]) with GQA and bottom-right causal masking."""
    q, k, v = (t.double() for t in (q, k, v))
    group = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
    s = torch.einsum("bihd,bjhd->bhij", q, k) * scale
    sq, sk = q.shape[1], k.shape[1]
    if causal:
        s = s.masked_fill(torch.arange(sk)[None, :] > torch.arange(sq)[:, None] + (sk - sq), float("-inf"))
    return torch.einsum("bhij,bjhd->bihd", torch.softmax(s, -1), v)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_aligned_half_precision_runs_the_tensor_core_kernels(emu, dtype):
    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(1, 40, 2, 64, generator=g).to(dtype)
    k, v = (torch.randn(1, 56, 1, 64, generator=g).to(dtype) for _ in range(2))
    dout = torch.randn(1, 40, 2, 64, generator=g).to(dtype)
    args = [to_numpy(t) for t in (q, k, v)]
    kw = dict(dropout_p=0.1)
    out, lse = emu.flash_attention_fwd(*args, True, 0.125, seed=seed, offset=5, **kw)
    mma_out, mma_lse = emu.flash_mma_fwd(*args, True, 0.125, seed=seed, offset=5, **kw)
    assert np.array_equal(np.asarray(out), np.asarray(mma_out)), f"seed={seed}: forward not the tensor-core kernel"
    assert np.array_equal(np.asarray(lse), np.asarray(mma_lse))
    grads = emu.flash_attention_bwd(*args, out, to_numpy(dout), lse, True, 0.125, seed=seed, offset=5, **kw)
    mma_grads = emu.flash_mma_bwd(*args, out, to_numpy(dout), lse, True, 0.125, dropout_seed=seed, dropout_offset=5,
                                  **kw)  # fmt: skip
    for name, a, b in zip("qkv", grads, mma_grads):
        assert np.array_equal(np.asarray(a), np.asarray(b)), f"seed={seed}: d{name} not the tensor-core kernel"


def test_unaligned_views_fall_back_to_the_scalar_kernels(emu):
    """A q view starting 4 elements (8 bytes) into its rows cannot feed 16-byte copies: the scalar kernels take
    it, with the same result."""
    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    wide = torch.randn(1, 24, 2, 72, generator=g).to(torch.bfloat16)
    q = wide[..., 4:68]
    q_view = to_numpy(wide)[..., 4:68]  # a numpy view 8 bytes into its rows: not 16-byte aligned
    k, v = (torch.randn(1, 24, 2, 64, generator=g).to(torch.bfloat16) for _ in range(2))
    assert not emu.flash_mma_fwd_layout_ok(q_view, to_numpy(k), to_numpy(v))
    out, _ = emu.flash_attention_fwd(q_view, to_numpy(k), to_numpy(v), True, 0.125)
    got = from_numpy(np.asarray(out), torch.bfloat16)
    err = (got.double() - reference(q, k, v, True, 0.125)).abs().max().item()
    assert err <= 2e-2, f"seed={seed}: scalar fallback error {err}"


def test_dropout_one_drops_everything_on_the_scalar_kernels(emu):
    """dropout_p = 1 (the tensor-core kernels need p < 1) goes to the scalar kernels: out is 0, lse untouched."""
    g = torch.Generator().manual_seed(fresh_seed())
    q, k, v = (torch.randn(1, 16, 2, 64, generator=g).to(torch.bfloat16) for _ in range(3))
    out, lse = emu.flash_attention_fwd(to_numpy(q), to_numpy(k), to_numpy(v), True, 0.125, dropout_p=1.0, seed=1)
    assert not from_numpy(np.asarray(out), torch.bfloat16).any()
    assert torch.isfinite(torch.from_numpy(np.asarray(lse))).all()
