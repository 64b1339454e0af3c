"""FlashAttention-2 kernels (csrc/kernels/flash_attention.cuh) on the CPU emulator.

Forward (out, lse) and backward (dq, dk, dv) are compared with float64 PyTorch autograd on fresh
random inputs: causal (bottom-right aligned) and not, head dims 64/80/96/128, grouped-query
attention, sequence lengths that are not multiples of the tiles, seqlen_q != seqlen_k, rows that
see no key at all. fp32 must be within 1e-5 of the reference (relative to the larger of 1 and
the reference's max magnitude); fp16/bf16 use flash-attention's rule: the kernel's max error may
be at most twice PyTorch's own max error when it computes in that precision. A second group runs
under the emulator's reverse and random thread schedules, which expose missing barriers, and
checks that results are bitwise identical to the in-order run (the kernels are deterministic).

Inputs are random with a fresh seed per run; a failure message names the seed, and
MBK_TEST_SEED=<n> replays it.
"""

from __future__ import annotations

import math
import os
import random

import numpy as np
import pytest
import torch

from megatron_biomed.kernels.emu_ops import from_numpy, to_numpy

# (batch, seqlen_q, seqlen_k, heads, kv_heads, head_dim, causal)
FP32_CASES = [
    (2, 17, 100, 4, 2, 64, False),  # GQA 4/2, Sq < Sk
    (1, 129, 129, 4, 1, 64, True),  # GQA 4/1 (MQA), one row past 4 tiles
    (1, 100, 33, 2, 2, 80, False),  # MHA, Sq > Sk
    (2, 17, 17, 4, 2, 80, True),
    (1, 1, 129, 4, 1, 96, False),  # a single query
    (1, 100, 100, 2, 1, 96, True),
    (1, 129, 17, 2, 1, 128, False),
    (2, 33, 33, 4, 2, 128, True),
    (1, 1, 1, 2, 1, 128, True),  # a single token
    (1, 17, 100, 4, 2, 64, True),  # causal, Sq < Sk: query i sees keys <= i + 83
    (1, 100, 17, 2, 1, 80, True),  # causal, Sq > Sk: the first 83 queries see no key
]
LOWP_CASES = [
    (1, 100, 100, 4, 2, 64, True),
    (1, 65, 129, 4, 1, 128, False),
    (2, 40, 40, 2, 1, 96, True),
    (1, 33, 70, 4, 4, 80, False),
]
SCHEDULE_CASES = [
    (1, 40, 70, 4, 2, 64, False),
    (1, 70, 70, 2, 1, 128, True),
    (2, 33, 50, 4, 1, 80, True),
    (1, 17, 17, 2, 2, 96, False),
]
FP32_TOL = 1e-5
LOWP_FLOOR = 1e-6  # "tiny floor", relative to max(1, max|ref|), for outputs torch gets exact


def case_id(case) -> str:
    b, sq, sk, h, hkv, d, causal = case
    return f"b{b}-sq{sq}-sk{sk}-h{h}kv{hkv}-d{d}-{'causal' if causal else 'full'}"


def fresh_seed() -> int:
    return int(os.environ.get("MBK_TEST_SEED", random.SystemRandom().randrange(2**31)))


# --------------------------------------------------------------------------------------------
# numpy <-> torch in the layout and element types the bindings take: megatron_biomed.kernels.emu_ops
# --------------------------------------------------------------------------------------------
# Reference: plain attention in torch, any dtype, with the kernel's conventions.
def attention_reference(q, k, v, causal: bool, scale: float):
    """q [B, Sq, H, D], k/v [B, Sk, Hkv, D] -> out [B, Sq, H, D], lse [B, H, Sq].

    Causal is bottom-right aligned; a query that sees no key gets out = 0 and lse = -inf.
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
    # Rows with no visible key: softmax over zeros (finite gradients), then multiplied away.
    empty = masked.all(dim=-1, keepdim=True)
    p = torch.softmax(s.masked_fill(masked & ~empty, float("-inf")).masked_fill(empty, 0.0), dim=-1)
    p = p * (~empty).to(p.dtype)
    out = torch.einsum("bhij,bjhd->bihd", p, v)
    return out, lse


def reference_fwd_bwd(q, k, v, dout, causal, scale, dtype):
    """Forward and gradients computed in `dtype` from the given (already rounded) inputs."""
    leaves = [x.to(dtype).detach().requires_grad_() for x in (q, k, v)]
    out, lse = attention_reference(*leaves, causal, scale)
    out.backward(dout.to(dtype))
    return {"out": out.detach(), "lse": lse.detach(), "dq": leaves[0].grad, "dk": leaves[1].grad, "dv": leaves[2].grad}


def make_inputs(case, dtype: torch.dtype, seed: int):
    b, sq, sk, h, hkv, d, _ = case
    g = torch.Generator().manual_seed(seed)
    shapes = [(b, sq, h, d), (b, sk, hkv, d), (b, sk, hkv, d), (b, sq, h, d)]
    return [torch.randn(s, generator=g, dtype=torch.float64).to(dtype) for s in shapes]


def run_kernel(emu, q, k, v, dout, causal: bool, scale: float):
    """Forward then backward through the emulated kernel; outputs back as torch tensors."""
    dtype = q.dtype
    out_np, lse_np = emu.flash_attention_fwd(to_numpy(q), to_numpy(k), to_numpy(v), causal, scale)
    dq, dk, dv = emu.flash_attention_bwd(
        to_numpy(q), to_numpy(k), to_numpy(v), out_np, to_numpy(dout), lse_np, causal, scale
    )
    res = {"out": out_np, "dq": dq, "dk": dk, "dv": dv}
    res = {name: from_numpy(a, dtype) for name, a in res.items()}
    res["lse"] = torch.from_numpy(lse_np)
    return res


def max_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return (x.double() - ref.double()).abs().max().item() if ref.numel() else 0.0


def magnitude(ref: torch.Tensor) -> float:
    return max(1.0, ref.double().abs().max().item() if ref.numel() else 0.0)


def check_lse_pattern(lse: torch.Tensor, ref: torch.Tensor, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """-inf exactly where the reference is -inf (rows with no key); returns the finite parts."""
    ref_empty = torch.isneginf(ref)
    assert torch.equal(torch.isneginf(lse), ref_empty), f"{where}: lse is -inf in the wrong rows"
    assert torch.isfinite(lse[~ref_empty]).all(), f"{where}: lse has non-finite values"
    return lse[~ref_empty], ref[~ref_empty]


# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", FP32_CASES, ids=case_id)
def test_fp32_matches_float64(emu, case):
    seed = fresh_seed()
    causal = case[-1]
    scale = 1.0 / math.sqrt(case[5])
    q, k, v, dout = make_inputs(case, torch.float32, seed)
    got = run_kernel(emu, q, k, v, dout, causal, scale)
    ref = reference_fwd_bwd(q, k, v, dout, causal, scale, torch.float64)
    where = f"{case_id(case)} fp32 seed={seed}"
    for name in ("out", "dq", "dk", "dv"):
        assert torch.isfinite(got[name]).all(), f"{where}: {name} has non-finite values"
        err = max_err(got[name], ref[name])
        assert err <= FP32_TOL * magnitude(ref[name]), f"{where}: {name} max error {err:.3g}"
    lse, lse_ref = check_lse_pattern(got["lse"], ref["lse"], where)
    assert max_err(lse, lse_ref) <= FP32_TOL * magnitude(lse_ref), f"{where}: lse error {max_err(lse, lse_ref):.3g}"
    if causal and case[1] > case[2]:  # rows that see no key produce exact zeros and no dq
        empty = case[2] - case[1] + torch.arange(case[1]) < 0
        assert (got["out"][:, empty] == 0).all() and (got["dq"][:, empty] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("case", LOWP_CASES, ids=case_id)
def test_low_precision_within_twice_torch_error(emu, case, dtype):
    seed = fresh_seed()
    causal = case[-1]
    scale = 1.0 / math.sqrt(case[5])
    q, k, v, dout = make_inputs(case, dtype, seed)  # rounded to dtype: everyone sees the same inputs
    got = run_kernel(emu, q, k, v, dout, causal, scale)
    ref = reference_fwd_bwd(q, k, v, dout, causal, scale, torch.float64)
    torch_lowp = reference_fwd_bwd(q, k, v, dout, causal, scale, dtype)
    where = f"{case_id(case)} {dtype} seed={seed}"
    assert got["out"].dtype == dtype and got["lse"].dtype == torch.float32
    for name in ("out", "dq", "dk", "dv"):
        assert torch.isfinite(got[name]).all(), f"{where}: {name} has non-finite values"
        err = max_err(got[name], ref[name])
        bound = 2 * max_err(torch_lowp[name], ref[name]) + LOWP_FLOOR * magnitude(ref[name])
        assert err <= bound, f"{where}: {name} max error {err:.3g} > {bound:.3g} (2x torch {dtype})"
    lse, lse_ref = check_lse_pattern(got["lse"], ref["lse"], where)
    torch_lse, _ = check_lse_pattern(torch_lowp["lse"].float(), ref["lse"], where + " (torch)")
    bound = 2 * max_err(torch_lse, lse_ref) + LOWP_FLOOR * magnitude(lse_ref)
    assert max_err(lse, lse_ref) <= bound, f"{where}: lse error {max_err(lse, lse_ref):.3g} > {bound:.3g}"


@pytest.mark.parametrize("case", SCHEDULE_CASES, ids=case_id)
def test_adversarial_schedules_bitwise_identical(emu, case):
    """Reverse and random thread orders give the in-order results bit for bit (and those are right)."""
    seed = fresh_seed()
    causal = case[-1]
    scale = 0.3  # a non-default softmax scale
    q, k, v, dout = make_inputs(case, torch.float32, seed)
    emu.set_schedule("in_order", 0)
    base = run_kernel(emu, q, k, v, dout, causal, scale)
    ref = reference_fwd_bwd(q, k, v, dout, causal, scale, torch.float64)
    for name in ("out", "dq", "dk", "dv"):
        err = max_err(base[name], ref[name])
        assert err <= FP32_TOL * magnitude(ref[name]), f"{case_id(case)} seed={seed}: {name} error {err:.3g}"
    for schedule in (("reverse", 0), ("random", seed), ("random", seed + 1)):
        emu.set_schedule(*schedule)
        got = run_kernel(emu, q, k, v, dout, causal, scale)
        for name in ("out", "lse", "dq", "dk", "dv"):
            assert torch.equal(got[name], base[name]), (
                f"{case_id(case)} seed={seed}: {name} differs under schedule {schedule}"
            )


def test_bf16_bits_and_dtype_override(emu):
    """uint16 arrays are bf16 bit patterns by default; dtype='float16' reads them as half bits."""
    case = (1, 9, 9, 2, 1, 64, True)
    q, k, v, _ = make_inputs(case, torch.float16, fresh_seed())
    want, want_lse = emu.flash_attention_fwd(to_numpy(q), to_numpy(k), to_numpy(v), True)
    bits = [to_numpy(x).view(np.uint16) for x in (q, k, v)]
    got, got_lse = emu.flash_attention_fwd(*bits, True, dtype="float16")
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got.view(np.float16), want)
    np.testing.assert_array_equal(got_lse, want_lse)
    with pytest.raises(TypeError, match="dtype"):
        emu.flash_attention_fwd(to_numpy(q), to_numpy(k), to_numpy(v), dtype="bfloat16")


@pytest.mark.parametrize(
    "shapes,match",
    [
        (((1, 4, 2, 32), (1, 4, 2, 32)), "head_dim 32 is not supported"),
        (((1, 4, 3, 64), (1, 4, 2, 64)), "must divide num_heads"),
        (((1, 4, 2, 64), (1, 4, 2, 80)), "k has shape"),
    ],
)
def test_bad_arguments_raise(emu, shapes, match):
    q = np.zeros(shapes[0], np.float32)
    k = np.zeros(shapes[1], np.float32)
    with pytest.raises(ValueError, match=match):
        emu.flash_attention_fwd(q, k, k)
