"""The emulator's tensor-core instructions (mbk/tensor_core.cuh on csrc/emu) against numpy.

The test kernels (csrc/emu_bindings/tensor_core_tests_bindings.cpp) load operands the way
mbk/tensor_core.cuh documents (the PTX ISA's fragment layouts); what each lane must receive is
written out here independently, and products are checked against float64 on fresh random inputs.
Inputs for the exact checks are small multiples of powers of two, so every product and every
partial sum is exact in float32 and the result must equal the float64 product bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

SCHEDULES = [("in_order", 0), ("reverse", 0), ("random", 3)]
DTYPES = ["float16", "bfloat16"]


def _bits(x: np.ndarray, dtype: str) -> np.ndarray:
    """float values exactly representable in `dtype` -> their uint16 bit patterns."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(getattr(torch, dtype))
    assert torch.equal(t.float(), torch.from_numpy(np.asarray(x, dtype=np.float32))), "not representable"
    return t.view(torch.int16).numpy().view(np.uint16)


def _rounded(x: np.ndarray, dtype: str) -> np.ndarray:
    """x rounded to `dtype` (as float64)."""
    return torch.from_numpy(x.astype(np.float32)).to(getattr(torch, dtype)).double().numpy()


def _exact_values(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Integers in [-8, 8] times 2^-3..2^0: exact in fp16 and bf16; 16-term dot products exact in float32."""
    return rng.integers(-8, 9, size=shape) * 2.0 ** rng.integers(-3, 1, size=shape)


# --------------------------------------------------------------------------------------------
# mma.m16n8k16
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_mma_exact(emu, dtype, schedule):
    emu.set_schedule(*schedule)
    rng = np.random.default_rng()
    warps = 3
    a = _exact_values(rng, (warps, 16, 16))
    b = _exact_values(rng, (warps, 16, 8))
    c = _exact_values(rng, (warps, 16, 8)).astype(np.float32)
    ref = a @ b + c
    for alias in (False, True):
        d = emu.tc_mma(_bits(a, dtype), _bits(b, dtype), c, dtype, alias)
        np.testing.assert_array_equal(d, ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mma_random_normal(emu, dtype):
    rng = np.random.default_rng()
    a = _rounded(rng.standard_normal((2, 16, 16)), dtype)
    b = _rounded(rng.standard_normal((2, 16, 8)), dtype)
    c = rng.standard_normal((2, 16, 8)).astype(np.float32)
    d = emu.tc_mma(_bits(a, dtype), _bits(b, dtype), c, dtype)
    ref = a @ b + c
    bound = 17 * np.finfo(np.float32).eps * (np.abs(a) @ np.abs(b) + np.abs(c))  # fp32 sum of 17 terms
    assert np.all(np.abs(d - ref) <= bound)


# --------------------------------------------------------------------------------------------
# ldmatrix
def _ldmatrix_expected(mats: np.ndarray, trans: bool) -> np.ndarray:
    """r[w, lane, i] per the PTX ISA: matrix i, row lane/4, columns 2(lane%4), +1 (transposed for .trans)."""
    warps, n = mats.shape[:2]
    out = np.zeros((warps, 32, n), dtype=np.uint32)
    for lane in range(32):
        row, col = lane // 4, 2 * (lane % 4)
        if trans:
            lo, hi = mats[:, :, col, row], mats[:, :, col + 1, row]
        else:
            lo, hi = mats[:, :, row, col], mats[:, :, row, col + 1]
        out[:, lane, :] = lo.astype(np.uint32) | (hi.astype(np.uint32) << 16)
    return out


@pytest.mark.parametrize("n", [1, 2, 4])
@pytest.mark.parametrize("trans", [False, True])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_ldmatrix_layouts(emu, n, trans, schedule):
    emu.set_schedule(*schedule)
    rng = np.random.default_rng()
    warps = 2
    mats = rng.integers(0, 1 << 16, size=(warps, n, 8, 8), dtype=np.uint16)
    # rows scattered over twice as many 16-byte-aligned slots, 24 uint16 apart
    slots = np.stack([rng.permutation(16 * n)[: 8 * n].reshape(n, 8) for _ in range(warps)]).astype(np.int32)
    r = emu.tc_ldmatrix(mats, slots, 24, trans)
    np.testing.assert_array_equal(r, _ldmatrix_expected(mats, trans))


# --------------------------------------------------------------------------------------------
# cp.async + ldmatrix + mma, end to end
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b_k_major", [True, False])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_gemm_through_ldmatrix_and_mma(emu, dtype, b_k_major, schedule):
    emu.set_schedule(*schedule)
    rng = np.random.default_rng()
    m, k, n = 32, 32, 16
    a = _exact_values(rng, (m, k))
    b = _exact_values(rng, (k, n))
    b_arg = b if b_k_major else np.ascontiguousarray(b.T)
    d = emu.tc_gemm(_bits(a, dtype), _bits(b_arg, dtype), b_k_major, dtype)
    np.testing.assert_array_equal(d, a @ b)


def test_gemm_16x16_at_16x8_random_normal(emu):
    rng = np.random.default_rng()
    a = _rounded(rng.standard_normal((16, 16)), "bfloat16")
    b = _rounded(rng.standard_normal((16, 16)), "bfloat16")
    d = emu.tc_gemm(_bits(a, "bfloat16"), _bits(b, "bfloat16"), True, "bfloat16")
    ref = a @ b
    assert np.all(np.abs(d - ref) <= 16 * np.finfo(np.float32).eps * (np.abs(a) @ np.abs(b)))


# --------------------------------------------------------------------------------------------
# cp.async: visible only after the wait that retires its group
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_cp_async_visibility_groups_and_zero_fill(emu, schedule):
    emu.set_schedule(*schedule)
    rng = np.random.default_rng()
    threads = 64
    src = rng.integers(0, 256, size=32 * threads, dtype=np.uint8)
    old = 0xA5
    src[src == old] = 0x5A  # so "old" and "new" always differ
    seen = emu.tc_cp_async(src, old, threads)
    chunks = src.reshape(threads, 2, 16)
    old_row = np.full((threads, 16), old, dtype=np.uint8)
    t = np.arange(threads)
    np.testing.assert_array_equal(seen[:, 0], old_row, err_msg="read before any wait saw the copy")
    np.testing.assert_array_equal(seen[:, 1], chunks[:, 0], err_msg="wait<1> did not retire the older group")
    np.testing.assert_array_equal(seen[:, 2], old_row, err_msg="wait<1> retired the newest group")
    np.testing.assert_array_equal(seen[:, 3], chunks[:, 1], err_msg="wait<0> did not retire every group")
    np.testing.assert_array_equal(seen[:, 4], old_row, err_msg="an uncommitted copy was performed")
    np.testing.assert_array_equal(seen[:, 5], 0, err_msg="!valid did not zero-fill")
    np.testing.assert_array_equal(seen[:, 6], chunks[(t + 1) % threads, 0], err_msg="not visible after barrier")
    np.testing.assert_array_equal(seen[:, 7], chunks[threads - 1 - t, 1], err_msg="not visible after barrier")


# --------------------------------------------------------------------------------------------
# Misuse is an error naming the instruction, not a hang or silent garbage
@pytest.mark.parametrize(
    "what,message",
    [
        ("mma_lane_missing", r"deadlock.*mma_m16n8k16<__half>"),
        ("mma_partial_warp", r"mma_m16n8k16<__half>, which needs all 32 lanes"),
        ("mma_mixed", r"every lane of a warp must reach the same collective"),
        ("ldmatrix_misaligned", r"ldmatrix_x2_trans .*lane 13 .*16-byte aligned"),
        ("ldmatrix_partial_warp", r"ldmatrix_x2_trans, which needs all 32 lanes"),
        ("cp_async_misaligned", r"thread \(3,0,0\).*cp_async_16.*16-byte aligned"),
        ("cp_async_never_waited", r"thread \(7,0,0\).*1 cp.async copies never waited for \(1 committed"),
        ("cp_async_uncommitted", r"cp.async copies never waited for \(0 committed"),
    ],
)
@pytest.mark.parametrize("schedule", SCHEDULES[:2])
def test_misuse_is_reported(emu, what, message, schedule):
    emu.set_schedule(*schedule)
    with pytest.raises(RuntimeError, match=message):
        emu.tc_misuse(what)
    # the emulator is usable afterwards
    rng = np.random.default_rng()
    a, b = _exact_values(rng, (1, 16, 16)), _exact_values(rng, (1, 16, 8))
    c = np.zeros((1, 16, 8), np.float32)
    np.testing.assert_array_equal(emu.tc_mma(_bits(a, "float16"), _bits(b, "float16"), c, "float16"), a @ b)
