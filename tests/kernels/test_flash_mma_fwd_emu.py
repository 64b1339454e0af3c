"""Tensor-core FlashAttention-2 forward (csrc/kernels/flash_attention_mma_fwd.cuh) on the CPU emulator.

The kernel runs the emulated mma.m16n8k16 / ldmatrix / cp.async (csrc/emu) in fp16 and bf16; out and lse are compared
with a float64 reference computed from the same 16-bit inputs, on fresh random inputs: every head dim, grouped-query
attention, causal (bottom-right) with seqlen_q < seqlen_k and seqlen_q > seqlen_k (rows that see no key: out 0,
lse -inf), lengths that are not multiples of the tiles (128 query rows, 64 or 32 keys), more key tiles than
pipeline stages, a strided [seq, batch, heads, dim] input and output, attention dropout against a mask drawn by a
self-contained numpy Philox (the definition of mbk/philox.cuh) and its reproducibility from (seed, offset), and the
random thread schedule.
Accuracy rule (flash-attention's): max|out - ref| <= 2 * max|torch in the same precision - ref| + a tiny floor.

A failure message names the seed; MBK_TEST_SEED=<n> replays it.
"""

from __future__ import annotations

import math
import os
import random

import numpy as np
import pytest
import torch

from megatron_biomed.kernels.emu_ops import from_numpy, to_numpy

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
FLOOR = 1e-6  # relative to max(1, max|ref|): for outputs torch happens to get exact

# (batch, seqlen_q, seqlen_k, heads, kv_heads, head_dim, causal, dtype)
CASES = [
    (1, 64, 64, 2, 1, 64, False, "bf16"),  # one tile each way, GQA 2/1
    (1, 70, 100, 2, 1, 80, True, "fp16"),  # causal, Sq < Sk, ragged: query i sees keys <= i + 30
    (2, 100, 33, 2, 2, 96, True, "bf16"),  # causal, Sq > Sk: the first 67 queries see no key
    (1, 17, 200, 2, 1, 128, False, "fp16"),  # 7 key tiles (32 keys at D=128) through the 2-stage ring, ragged tail
    (1, 130, 130, 2, 2, 128, True, "bf16"),  # two query tiles (128 rows each), diagonal tiles
]


def case_id(case) -> str:
    b, sq, sk, h, hkv, d, causal, dt = case
    return f"b{b}-sq{sq}-sk{sk}-h{h}kv{hkv}-d{d}-{'causal' if causal else 'full'}-{dt}"


def fresh_seed() -> int:
    return int(os.environ.get("MBK_TEST_SEED", random.SystemRandom().randrange(2**31)))


# ---- a self-contained Philox4x32-10 and the dropout mask of mbk/philox.cuh ------------------------------------
_M0, _M1, _W0, _W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
_U32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(counter, key):
    """Random123's Philox4x32-10 on broadcastable uint arrays: counter (c0..c3), key (k0, k1) -> 4 uint64 words."""
    c = [np.asarray(x, np.uint64) for x in counter]
    k0, k1 = (np.asarray(x, np.uint64) for x in key)
    for _ in range(10):
        p0 = np.uint64(_M0) * c[0]
        p1 = np.uint64(_M1) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & _U32, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & _U32]
        k0 = (k0 + np.uint64(_W0)) & _U32
        k1 = (k1 + np.uint64(_W1)) & _U32
    return c


def dropout_threshold(p: float) -> int:
    t = float(np.float32(p)) * 4294967296.0 + 0.5
    return 4294967295 if t >= 4294967295.0 else (0 if t <= 0.0 else int(t))


def dropout_keep(seed: int, offset: int, p: float, batch: int, heads: int, sq: int, sk: int) -> np.ndarray:
    """Keep mask [batch, heads, sq, sk]: counter (j / 4, i, b * heads + h, offset), key (lo, hi of seed)."""
    bh = np.arange(batch * heads, dtype=np.uint64)[:, None, None]
    i = np.arange(sq, dtype=np.uint64)[None, :, None]
    j = np.arange(sk, dtype=np.uint64)[None, None, :]
    words = philox4x32_10((j >> np.uint64(2), i, bh, np.uint64(offset)), (seed & 0xFFFFFFFF, seed >> 32))
    word = np.choose((j & np.uint64(3)).astype(np.int64), words)  # word j % 4 belongs to column j
    return (word >= dropout_threshold(p)).reshape(batch, heads, sq, sk)


def test_philox_known_answers():
    """The test's Philox is Random123's (its known-answer vectors), so the kernel is checked against the definition."""
    got = philox4x32_10((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0))
    assert [int(x) for x in got] == [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]
    got = philox4x32_10((0,) * 4, (0, 0))
    assert [int(x) for x in got] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]


# ---- reference --------------------------------------------------------------------------------------------------
def attention(q, k, v, causal: bool, scale: float, keep=None, p_drop: float = 0.0):
    """q [B, Sq, H, D], k/v [B, Sk, Hkv, D] in any torch dtype -> out [B, Sq, H, D], lse [B, H, Sq].

    Bottom-right causal; rows with no visible key: out 0, lse -inf. Dropout (keep [B, H, Sq, Sk]) after the
    softmax, kept elements scaled by 1 / (1 - p); lse is of the undropped scores.
    """
    sq, sk = q.shape[1], k.shape[1]
    group = q.shape[2] // k.shape[2]
    k = k.repeat_interleave(group, dim=2)
    v = v.repeat_interleave(group, dim=2)
    s = torch.einsum("bihd,bjhd->bhij", q, k) * scale
    masked = torch.zeros(sq, sk, dtype=torch.bool)
    if causal:
        masked = torch.arange(sk)[None, :] > torch.arange(sq)[:, None] + (sk - sq)
    s = s.masked_fill(masked, float("-inf"))
    lse = torch.logsumexp(s.float() if s.dtype != torch.float64 else s, dim=-1)
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)
    if keep is not None:
        p = p * torch.from_numpy(keep).to(p.dtype) / (1.0 - p_drop)
    return torch.einsum("bhij,bjhd->bihd", p, v), lse


def make_inputs(case, seed: int):
    b, sq, sk, h, hkv, d, _, dt = case
    g = torch.Generator().manual_seed(seed)
    shapes = [(b, sq, h, d), (b, sk, hkv, d), (b, sk, hkv, d)]
    return [torch.randn(s, generator=g, dtype=torch.float64).to(DTYPES[dt]) for s in shapes]


def max_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return (x.double() - ref.double()).abs().max().item() if ref.numel() else 0.0


def magnitude(ref: torch.Tensor) -> float:
    return max(1.0, ref.double().abs().max().item() if ref.numel() else 0.0)


def run(emu, q, k, v, causal, scale, **kw):
    out, lse = emu.flash_mma_fwd(to_numpy(q), to_numpy(k), to_numpy(v), causal, scale, **kw)
    return from_numpy(out, q.dtype), torch.from_numpy(lse)


def check_against_reference(out, lse, q, k, v, causal, scale, where, keep=None, p_drop=0.0):
    ref_out, ref_lse = attention(q.double(), k.double(), v.double(), causal, scale, keep, p_drop)
    low_out, low_lse = attention(q, k, v, causal, scale, keep, p_drop)
    assert out.dtype == q.dtype and lse.dtype == torch.float32
    assert torch.isfinite(out).all(), f"{where}: out has non-finite values"
    bound = 2 * max_err(low_out, ref_out) + FLOOR * magnitude(ref_out)
    assert max_err(out, ref_out) <= bound, f"{where}: out error {max_err(out, ref_out):.3g} > {bound:.3g}"
    empty = torch.isneginf(ref_lse)
    assert torch.equal(torch.isneginf(lse), empty), f"{where}: lse is -inf in the wrong rows"
    lse_bound = 2 * max_err(low_lse[~empty], ref_lse[~empty]) + FLOOR * magnitude(ref_lse[~empty])
    lse_err = max_err(lse[~empty], ref_lse[~empty])
    assert lse_err <= lse_bound, f"{where}: lse error {lse_err:.3g} > {lse_bound:.3g}"
    rows_empty = empty.permute(0, 2, 1)  # [B, Sq, H]
    assert (out[rows_empty] == 0).all(), f"{where}: rows that see no key must be exactly 0"


# ---- tests ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_float64(emu, case):
    seed = fresh_seed()
    causal = case[6]
    scale = 1.0 / math.sqrt(case[5])
    q, k, v = make_inputs(case, seed)
    out, lse = run(emu, q, k, v, causal, scale)
    check_against_reference(out, lse, q, k, v, causal, scale, f"{case_id(case)} seed={seed}")


def test_strided_sbhd_in_and_out(emu):
    """[seq, batch, heads, dim] arrays go in (and out) as strided views: no copies, same bits as contiguous."""
    seed = fresh_seed()
    case = (2, 40, 72, 2, 1, 64, True, "bf16")
    q, k, v = make_inputs(case, seed)
    scale = 0.3
    sbhd = [to_numpy(x.transpose(0, 1)) for x in (q, k, v)]  # contiguous [s, b, h, d]
    views = [a.transpose(1, 0, 2, 3) for a in sbhd]  # [b, s, h, d] views with batch stride h*d, row stride b*h*d
    assert not views[0].flags.c_contiguous
    out_sbhd = np.zeros((40, 2, 2, 64), np.uint16)
    out_view, lse = emu.flash_mma_fwd(*views, True, scale, out=out_sbhd.transpose(1, 0, 2, 3))
    assert np.shares_memory(out_view, out_sbhd)
    want, want_lse = emu.flash_mma_fwd(to_numpy(q), to_numpy(k), to_numpy(v), True, scale)
    np.testing.assert_array_equal(out_sbhd.transpose(1, 0, 2, 3), want)
    np.testing.assert_array_equal(lse, want_lse)
    check_against_reference(from_numpy(want, q.dtype), torch.from_numpy(lse), q, k, v, True, scale, f"seed={seed}")


def test_no_keys_at_all(emu):
    """seqlen_k = 0: every row sees no key, out is 0 and lse -inf (k and v are never read)."""
    q = np.ones((1, 5, 2, 80), np.float16)
    kv = np.zeros((1, 0, 1, 80), np.float16)
    out, lse = emu.flash_mma_fwd(q, kv, kv)
    assert (out == 0).all() and np.isneginf(lse).all()


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_dropout_matches_philox_mask(emu, dtype):
    seed = fresh_seed()
    case = (1, 70, 90, 2, 1, 64, True, dtype)
    q, k, v = make_inputs(case, seed)
    scale, p_drop = 0.125, 0.25
    drop_seed, offset = (seed * 0x9E3779B97F4A7C15) % 2**64, seed % 1000
    out, lse = run(emu, q, k, v, True, scale, dropout_p=p_drop, seed=drop_seed, offset=offset)
    keep = dropout_keep(drop_seed, offset, p_drop, 1, 2, 70, 90)
    check_against_reference(out, lse, q, k, v, True, scale, f"{dtype} seed={seed}", keep, p_drop)


def test_dropout_reproducible_from_seed_and_offset(emu):
    seed = fresh_seed()
    q, k, v = make_inputs((1, 33, 50, 2, 2, 96, False, "fp16"), seed)
    a = run(emu, q, k, v, False, 0.1, dropout_p=0.5, seed=seed, offset=7)
    b = run(emu, q, k, v, False, 0.1, dropout_p=0.5, seed=seed, offset=7)
    c = run(emu, q, k, v, False, 0.1, dropout_p=0.5, seed=seed, offset=8)
    d = run(emu, q, k, v, False, 0.1, dropout_p=0.5, seed=seed + 2**32, offset=7)  # the seed's high word counts
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], d[0])
    assert torch.equal(a[1], c[1])  # lse is of the undropped scores


@pytest.mark.parametrize("landing", ["at_wait", "at_issue"])
def test_random_schedule_bitwise_identical(emu, landing):
    """Threads interleaved at random between synchronisation points (exposes missing barriers / waits); with cp.async
    copies landing at issue, a K/V stage refilled while another warp still reads it shows up too."""
    seed = fresh_seed()
    case = (1, 80, 150, 2, 1, 80, True, "bf16")
    q, k, v = make_inputs(case, seed)
    base = run(emu, q, k, v, True, 0.2, dropout_p=0.1, seed=seed, offset=3)
    emu.set_cp_async_landing(landing)
    emu.set_schedule("random", seed)
    got = run(emu, q, k, v, True, 0.2, dropout_p=0.1, seed=seed, offset=3)
    assert torch.equal(got[0], base[0]) and torch.equal(got[1], base[1]), f"seed={seed}"


def test_bad_arguments_raise(emu):
    ok = np.zeros((1, 4, 2, 64), np.float16)
    misaligned = np.zeros((1, 4, 2, 72), np.float16)[..., 1:65]  # pointer 2 bytes past a 16-byte boundary
    odd_stride = np.zeros((1, 4, 2, 68), np.float16)[..., :64]  # head stride 68 elements
    assert emu.flash_mma_fwd_layout_ok(ok, ok, ok)
    assert not emu.flash_mma_fwd_layout_ok(misaligned, ok, ok)
    assert not emu.flash_mma_fwd_layout_ok(ok, ok, odd_stride)
    assert not emu.flash_mma_fwd_layout_ok(ok, ok, ok, out=np.zeros((1, 4, 2, 72), np.float16)[..., 4:68])
    with pytest.raises(ValueError, match="q must be 16-byte aligned"):
        emu.flash_mma_fwd(misaligned, ok, ok)
    with pytest.raises(ValueError, match="k strides .* must be multiples of 8"):
        emu.flash_mma_fwd(ok, odd_stride, ok)
    with pytest.raises(ValueError, match="head_dim 32 is not supported"):
        emu.flash_mma_fwd(*(np.zeros((1, 4, 2, 32), np.float16),) * 3)
    with pytest.raises(ValueError, match="dropout_p"):
        emu.flash_mma_fwd(ok, ok, ok, dropout_p=1.0)
    with pytest.raises(TypeError, match="float16, or uint16"):
        emu.flash_mma_fwd(*(np.zeros((1, 4, 2, 64), np.float32),) * 3)
