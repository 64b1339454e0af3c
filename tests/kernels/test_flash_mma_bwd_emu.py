"""Tensor-core FlashAttention-2 backward (csrc/kernels/flash_attention_mma_bwd.cuh) on the CPU emulator.

dq, dk, dv from the kernels are compared with float64 PyTorch autograd on fresh random inputs (fp16 and bf16, every
head dim, grouped-query attention, causal bottom-right with seqlen_q != seqlen_k, lengths that are not multiples of
the tiles, rows that see no key, attention dropout with the mask drawn from the same Philox counters). The kernels
get the float64 forward's out (rounded to the dtype) and lse, as the tensor-core forward would give them. Accuracy
rule (flash-attention's): the kernel's max error is at most twice PyTorch's own max error when it computes the same
attention in that precision, plus a tiny floor. Also: arbitrary strides in and out (a [seq, batch, heads, dim]
layout without copies), zero lengths (every output written), determinism (bitwise equal runs, also under the
emulator's reverse and random thread schedules), argument errors.

Inputs are random with a fresh seed per run; a failure message names the seed, and MBK_TEST_SEED=<n> replays it.
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
LOWP_FLOOR = 1e-6  # relative to max(1, max|ref|)


def fresh_seed() -> int:
    return int(os.environ.get("MBK_TEST_SEED", random.SystemRandom().randrange(2**31)))


# --------------------------------------------------------------------------------------------
# The dropout mask of mbk/philox.cuh, in numpy (Philox4x32-10, Random123's constants).
_M0, _M1, _W0, _W1, _MASK32 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85, 0xFFFFFFFF


def philox4x32_10(c0, c1, c2, c3, k0: int, k1: int):
    c = [np.asarray(x, dtype=np.uint64) & _MASK32 for x in (c0, c1, c2, c3)]
    k0, k1 = np.uint64(k0 & _MASK32), np.uint64(k1 & _MASK32)
    for _ in range(10):
        p0 = np.uint64(_M0) * c[0]
        p1 = np.uint64(_M1) * c[2]
        hi0, lo0 = p0 >> np.uint64(32), p0 & np.uint64(_MASK32)
        hi1, lo1 = p1 >> np.uint64(32), p1 & np.uint64(_MASK32)
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
        k0 = np.uint64((int(k0) + _W0) & _MASK32)
        k1 = np.uint64((int(k1) + _W1) & _MASK32)
    return c


def test_numpy_philox_known_answers():
    """Random123's known-answer vectors for Philox4x32-10, so the reference mask below is the real Philox."""
    got = [int(x) for x in philox4x32_10(0, 0, 0, 0, 0, 0)]
    assert got == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    f = _MASK32
    got = [int(x) for x in philox4x32_10(f, f, f, f, f, f)]
    assert got == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]


def dropout_threshold(p: float) -> int:
    t = float(np.float32(p)) * 4294967296.0 + 0.5
    return 4294967295 if t >= 4294967295.0 else (0 if t <= 0.0 else int(t))


def dropout_keep_mask(b: int, h: int, sq: int, sk: int, p: float, seed: int, offset: int) -> torch.Tensor:
    """[b, h, sq, sk] bool: element (b, h, i, j) kept iff word j % 4 of Philox((j/4, i, b*h_count + h, offset),
    (lo32(seed), hi32(seed))) >= threshold(p)."""
    bi, hi, ii, jj = np.meshgrid(np.arange(b), np.arange(h), np.arange(sq), np.arange(sk), indexing="ij")
    words = philox4x32_10(jj >> 2, ii, bi * h + hi, np.full_like(ii, offset), seed & _MASK32, seed >> 32)
    word = np.choose(jj & 3, words)
    return torch.from_numpy(word >= np.uint64(dropout_threshold(p)))


# --------------------------------------------------------------------------------------------
def attention(q, k, v, causal: bool, scale: float, keep=None, drop_p: float = 0.0):
    """q [B, Sq, H, D], k/v [B, Sk, Hkv, D] -> out [B, Sq, H, D], lse [B, H, Sq], in q's dtype.

    Causal is bottom-right aligned; a query that sees no key gets out = 0 and lse = -inf. With `keep` ([B, H, Sq,
    Sk] bool) the probabilities are dropped and rescaled by 1 / (1 - drop_p) after the softmax (lse is undropped).
    """
    sq, sk = q.shape[1], k.shape[1]
    group = q.shape[2] // k.shape[2]
    k = k.repeat_interleave(group, dim=2)
    v = v.repeat_interleave(group, dim=2)
    s = torch.einsum("bihd,bjhd->bhij", q, k) * scale
    masked = torch.zeros(sq, sk, dtype=torch.bool)
    if causal:
        masked = torch.arange(sk)[None, :] > torch.arange(sq)[:, None] + (sk - sq)
    lse = torch.logsumexp(s.masked_fill(masked, float("-inf")), dim=-1)
    empty = masked.all(dim=-1, keepdim=True)
    p = torch.softmax(s.masked_fill(masked & ~empty, float("-inf")).masked_fill(empty, 0.0), dim=-1)
    p = p * (~empty).to(p.dtype)
    if keep is not None:
        p = p * keep.to(p.dtype) * (1.0 / (1.0 - drop_p))
    return torch.einsum("bhij,bjhd->bihd", p, v), lse


def reference(q, k, v, dout, causal, scale, dtype, keep=None, drop_p=0.0):
    leaves = [x.to(dtype).detach().requires_grad_() for x in (q, k, v)]
    out, lse = attention(*leaves, causal, scale, keep, drop_p)
    out.backward(dout.to(dtype))
    return {"out": out.detach(), "lse": lse.detach(), "dq": leaves[0].grad, "dk": leaves[1].grad, "dv": leaves[2].grad}


def make_inputs(case, dtype, seed):
    b, sq, sk, h, hkv, d = case[:6]
    g = torch.Generator().manual_seed(seed)
    shapes = [(b, sq, h, d), (b, sk, hkv, d), (b, sk, hkv, d), (b, sq, h, d)]
    return [torch.randn(s, generator=g, dtype=torch.float64).to(dtype) for s in shapes]


def run_bwd(emu, q, k, v, dout, ref64, causal, scale, **kw):
    """The kernel's dq, dk, dv (torch, q's dtype) given the float64 forward's out and lse."""
    dtype = q.dtype
    out = to_numpy(ref64["out"].to(dtype))
    lse = ref64["lse"].float().numpy()
    dq, dk, dv = emu.flash_mma_bwd(to_numpy(q), to_numpy(k), to_numpy(v), out, to_numpy(dout), lse, causal, scale, **kw)
    return {name: from_numpy(np.asarray(a), dtype) for name, a in (("dq", dq), ("dk", dk), ("dv", dv))}


def max_err(x, ref) -> float:
    return (x.double() - ref.double()).abs().max().item() if ref.numel() else 0.0


def magnitude(ref) -> float:
    return max(1.0, ref.double().abs().max().item() if ref.numel() else 0.0)


def delta_from_rounded_out(q, k, v, dout, causal, scale, dtype, keep=None, drop_p=0.0):
    """Float64 gradients computed as the kernels do, with delta = rowsum(dout * out) from out rounded to `dtype`
    (the kernels receive out in that precision). Their distance from the exact gradients is the error the
    interface itself implies: for a query that sees one key, the exact dS is 0 but out's rounding is not."""
    q, k, v, dout = (x.double() for x in (q, k, v, dout))
    out, lse = attention(q, k, v, causal, scale, keep, drop_p)
    delta = (dout * out.to(dtype).double()).sum(-1).transpose(1, 2)  # [B, H, Sq]
    group = q.shape[2] // k.shape[2]
    kx, vx = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
    s = torch.einsum("bihd,bjhd->bhij", q, kx) * scale
    sq, sk = q.shape[1], k.shape[1]
    visible = torch.ones(sq, sk, dtype=torch.bool)
    if causal:
        visible = torch.arange(sk)[None, :] <= torch.arange(sq)[:, None] + (sk - sq)
    p = torch.where(visible, torch.exp(s - lse[..., None]), torch.zeros((), dtype=s.dtype))
    drop = keep.double() / (1.0 - drop_p) if keep is not None else torch.ones((), dtype=s.dtype)
    dp = torch.einsum("bihd,bjhd->bhij", dout, vx) * drop
    ds = p * (dp - delta[..., None])
    b, hkv = k.shape[0], k.shape[2]
    dk = (torch.einsum("bhij,bihd->bjhd", ds, q) * scale).reshape(b, sk, hkv, group, -1).sum(3)
    dv = torch.einsum("bhij,bihd->bjhd", p * drop, dout).reshape(b, sk, hkv, group, -1).sum(3)
    return {"dq": torch.einsum("bhij,bjhd->bihd", ds, kx) * scale, "dk": dk, "dv": dv}


def check_accuracy(got, ref64, ref_lowp, ref_delta, where):
    """max|kernel - exact| <= 2 max|torch in low precision - exact| + (error implied by out's rounding) + floor."""
    for name in ("dq", "dk", "dv"):
        assert torch.isfinite(got[name]).all(), f"{where}: {name} has non-finite values"
        err = max_err(got[name], ref64[name])
        intrinsic = max_err(ref_delta[name], ref64[name])
        bound = 2 * max_err(ref_lowp[name], ref64[name]) + intrinsic + LOWP_FLOOR * magnitude(ref64[name])
        assert err <= bound, f"{where}: {name} max error {err:.3g} > {bound:.3g} (2x torch low precision)"


def case_id(case) -> str:
    b, sq, sk, h, hkv, d, causal, dt = case
    return f"{dt}-b{b}-sq{sq}-sk{sk}-h{h}kv{hkv}-d{d}-{'causal' if causal else 'full'}"


# (batch, seqlen_q, seqlen_k, heads, kv_heads, head_dim, causal, dtype)
CASES = [
    (1, 40, 40, 2, 1, 64, True, "bf16"),  # GQA 2/1, causal, square, ragged (not a tile multiple)
    (1, 17, 70, 2, 2, 80, True, "fp16"),  # causal, Sq < Sk: query i sees keys <= i + 53
    (1, 70, 17, 2, 1, 96, True, "bf16"),  # causal, Sq > Sk: the first 53 queries see no key (dq = 0 there)
    (2, 33, 20, 4, 2, 128, False, "fp16"),  # batch 2, GQA 4/2, full
]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_float64(emu, case):
    seed = fresh_seed()
    causal, dtype = case[6], DTYPES[case[7]]
    scale = 1.0 / math.sqrt(case[5])
    q, k, v, dout = make_inputs(case, dtype, seed)
    ref64 = reference(q, k, v, dout, causal, scale, torch.float64)
    got = run_bwd(emu, q, k, v, dout, ref64, causal, scale)
    where = f"{case_id(case)} seed={seed}"
    check_accuracy(
        got,
        ref64,
        reference(q, k, v, dout, causal, scale, dtype),
        delta_from_rounded_out(q, k, v, dout, causal, scale, dtype),
        where,
    )
    if causal and case[1] > case[2]:
        empty = case[2] - case[1] + torch.arange(case[1]) < 0
        assert (got["dq"][:, empty] == 0).all(), f"{where}: dq of rows that see no key is not 0"


@pytest.mark.parametrize("dt", ["fp16", "bf16"])
def test_dropout_matches_reference_with_same_mask(emu, dt):
    """The backward regenerates the forward's mask from (seed, offset): gradients match autograd through it."""
    seed = fresh_seed()
    case = (2, 24, 36, 2, 1, 64, True, dt) if dt == "fp16" else (1, 36, 24, 2, 2, 80, False, dt)
    b, sq, sk, h = case[:4]
    causal, dtype = case[6], DTYPES[dt]
    drop_p, drop_seed, drop_offset = 0.25, (seed * 2654435761) % 2**64, seed % 1000
    scale = 1.0 / math.sqrt(case[5])
    keep = dropout_keep_mask(b, h, sq, sk, drop_p, drop_seed, drop_offset)
    q, k, v, dout = make_inputs(case, dtype, seed)
    ref64 = reference(q, k, v, dout, causal, scale, torch.float64, keep, drop_p)
    kw = dict(dropout_p=drop_p, dropout_seed=drop_seed, dropout_offset=drop_offset)
    got = run_bwd(emu, q, k, v, dout, ref64, causal, scale, **kw)
    where = f"{case_id(case)} p={drop_p} seed={seed}"
    check_accuracy(
        got,
        ref64,
        reference(q, k, v, dout, causal, scale, dtype, keep, drop_p),
        delta_from_rounded_out(q, k, v, dout, causal, scale, dtype, keep, drop_p),
        where,
    )
    # The mask matters: the gradients of the undropped attention are far from the kernel's.
    plain = reference(q, k, v, dout, causal, scale, torch.float64)
    assert max_err(got["dv"], plain["dv"]) > 10 * max_err(got["dv"], ref64["dv"]), where


def test_strided_inputs_and_outputs(emu):
    """[seq, batch, heads, dim] tensors go in as transposed views, and dq/dk/dv are written into strided views
    (prefilled with NaN: every element is overwritten); the results equal the contiguous run bit for bit."""
    seed = fresh_seed()
    case = (2, 21, 30, 2, 1, 96, True, "bf16")
    b, sq, sk, h, hkv, d = case[:6]
    dtype, scale = torch.bfloat16, 0.3
    q, k, v, dout = make_inputs(case, dtype, seed)
    ref64 = reference(q, k, v, dout, True, scale, torch.float64)
    want = run_bwd(emu, q, k, v, dout, ref64, True, scale)
    check_accuracy(
        want,
        ref64,
        reference(q, k, v, dout, True, scale, dtype),
        delta_from_rounded_out(q, k, v, dout, True, scale, dtype),
        f"strided seed={seed}",
    )

    def sbhd(x):  # same values, [S, B, H, D] storage, seen as [B, S, H, D]
        return np.ascontiguousarray(to_numpy(x).transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)

    out = sbhd(ref64["out"].to(dtype))
    lse = ref64["lse"].float().numpy()
    nan = np.uint16(0x7FC0)  # a bf16 NaN

    def nan_buffer(shape):  # padded heads and a wider head row: strides that are not the contiguous ones
        buf = np.full((shape[1], shape[0], shape[2] + 1, shape[3] + 8), nan, dtype=np.uint16)
        return buf.transpose(1, 0, 2, 3)[:, :, : shape[2], : shape[3]]

    dq, dk, dv = nan_buffer((b, sq, h, d)), nan_buffer((b, sk, hkv, d)), nan_buffer((b, sk, hkv, d))
    assert not dq.flags.c_contiguous and not sbhd(q).flags.c_contiguous
    emu.flash_mma_bwd(sbhd(q), sbhd(k), sbhd(v), out, sbhd(dout), lse, True, scale, dq=dq, dk=dk, dv=dv)
    for name, arr in (("dq", dq), ("dk", dk), ("dv", dv)):
        assert torch.equal(from_numpy(np.ascontiguousarray(arr), dtype), want[name]), f"seed={seed}: {name}"


@pytest.mark.parametrize(
    "sq,sk,batch",
    [(0, 23, 1), (19, 0, 2), (0, 0, 1), (5, 5, 0)],
    ids=["sq0", "sk0", "both0", "batch0"],
)
def test_zero_lengths_write_zeros(emu, sq, sk, batch):
    h, hkv, d = 2, 1, 64
    nan = np.float16("nan")
    q = np.random.default_rng(0).standard_normal((batch, sq, h, d)).astype(np.float16)
    k = np.random.default_rng(1).standard_normal((batch, sk, hkv, d)).astype(np.float16)
    out = np.zeros_like(q)
    lse = np.full((batch, h, sq), -np.inf, np.float32)
    dq, dk, dv = np.full_like(q, nan), np.full_like(k, nan), np.full_like(k, nan)
    emu.flash_mma_bwd(q, k, k, out, q, lse, True, dq=dq, dk=dk, dv=dv)
    for name, a in (("dq", dq), ("dk", dk), ("dv", dv)):
        assert (a == 0).all(), f"{name} not overwritten with zeros"


def test_deterministic_across_runs_and_schedules(emu):
    """Two runs are bitwise equal, also when the emulator runs threads and blocks in reverse or random order
    (which exposes a missing barrier or cp.async wait; with copies landing at issue, a stage refilled while another
    warp still reads it), with GQA groups summed over several query tiles."""
    seed = fresh_seed()
    case = (1, 50, 45, 4, 1, 64, True, "fp16")
    q, k, v, dout = make_inputs(case, torch.float16, seed)
    scale = 0.125
    ref64 = reference(q, k, v, dout, True, scale, torch.float64)
    kw = dict(dropout_p=0.1, dropout_seed=seed, dropout_offset=7)
    base = run_bwd(emu, q, k, v, dout, ref64, True, scale, **kw)
    again = run_bwd(emu, q, k, v, dout, ref64, True, scale, **kw)
    for schedule in (None, ("reverse", 0), ("random", seed), ("random", seed + 1, "at_issue")):
        if schedule:
            emu.set_schedule(*schedule[:2])
            emu.set_cp_async_landing(schedule[2] if len(schedule) > 2 else "at_wait")  # at_issue: refill races
            again = run_bwd(emu, q, k, v, dout, ref64, True, scale, **kw)
        for name in ("dq", "dk", "dv"):
            assert torch.equal(again[name].view(torch.int16), base[name].view(torch.int16)), (
                f"seed={seed}: {name} differs under schedule {schedule}"
            )


@pytest.mark.parametrize(
    "what,match",
    [
        ("head_dim", "head_dim 32 is not supported"),
        ("gqa", "must divide num_heads"),
        ("stride", r"q stride \w+ \(68 elements\) must be a multiple of 8"),
        ("dropout", "dropout_p"),
        ("shape", "lse has shape"),
    ],
)
def test_bad_arguments_raise(emu, what, match):
    d = 32 if what == "head_dim" else 64
    q = np.zeros((1, 4, 3 if what == "gqa" else 2, d), np.float16)
    k = np.zeros((1, 4, 2, d), np.float16)
    if what == "stride":  # rows of 2 heads x 68 elements: not a multiple of 8
        q = np.zeros((1, 4, 2, 68), np.float16)[..., :64]
    lse = np.zeros((1, q.shape[2], 5 if what == "shape" else 4), np.float32)
    with pytest.raises(ValueError, match=match):
        emu.flash_mma_bwd(q, k, k, q, q, lse, dropout_p=1.0 if what == "dropout" else 0.0)
