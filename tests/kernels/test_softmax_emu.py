"""Fused attention softmax kernels (csrc/kernels/softmax.cuh) on the CPU emulator vs float64 torch.

Fresh random scores (seeded per case) and masks -- random padding masks with fully masked rows and
rows with a single visible key forced in -- are rounded to the dtype under test; the reference is
float64 torch on those same values, with fully masked rows defined as zeros. Error measure:
max |out - ref| / max |ref| (normwise relative). fp32 within 1e-5; fp16/bf16 within 2x the error of
torch doing the same computation at that precision, plus an absolute floor of 1e-6 of max |ref|.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch
from numerics import rel_err

from megatron_biomed.kernels.emu_ops import from_numpy as from_emu
from megatron_biomed.kernels.emu_ops import to_numpy as to_emu

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
FP32_TOL = 1e-5
FLOOR = 1e-6


def check(name, ours, ref, torch_lowp, dtype):
    assert torch.isfinite(ours.double()).all(), f"{name}: non-finite output"
    err = rel_err(ours, ref)
    bound = FP32_TOL if dtype == "float32" else 2 * rel_err(torch_lowp, ref) + FLOOR
    assert err <= bound, f"{name} ({dtype}): error {err:.3g} > bound {bound:.3g}"
    return err


def seed_of(*parts) -> int:
    return zlib.crc32(" ".join(map(str, parts)).encode())


def softmax_ref(s: torch.Tensor, excluded: torch.Tensor) -> torch.Tensor:
    """softmax over the last dim with excluded positions 0 and rows with nothing left all 0."""
    y = torch.softmax(s.masked_fill(excluded, float("-inf")), dim=-1)
    return torch.nan_to_num(y, nan=0.0)


def backward_ref(dy: torch.Tensor, y: torch.Tensor, scale: float) -> torch.Tensor:
    """Gradient w.r.t. x of softmax(scale * x), given the output y (float64)."""
    return scale * y * (dy - (dy * y).sum(-1, keepdim=True))


def torch_lowp_bwd(dy: torch.Tensor, y: torch.Tensor, scale: float) -> torch.Tensor:
    """torch's own softmax backward kernel at y's precision, then the scale."""
    return torch._softmax_backward_data(dy, y, -1, y.dtype) * scale


def make_mask(b, sq, sk, mask_batch, g):
    mask = torch.rand(mask_batch, 1, sq, sk, generator=g) < 0.3
    mask[0, 0, 0, :] = True  # a fully masked row
    if sq > 1:
        mask[-1, 0, 1, :] = True  # one visible key only
        mask[-1, 0, 1, int(torch.randint(sk, (1,), generator=g))] = False
    return mask


# (batch, heads, sq, sk, mask kind): "batch" = one mask per batch, "shared" = [1, 1, sq, sk], "none"
MASKED_CASES = [
    (2, 3, 5, 7, "batch"),
    (1, 2, 16, 64, "none"),
    (2, 2, 33, 100, "batch"),
    (3, 2, 8, 128, "shared"),
    (2, 1, 3, 1, "batch"),
    (1, 1, 4, 1024, "batch"),
    (1, 2, 3, 2049, "shared"),
    (1, 1, 2, 4096, "batch"),
    (1, 1, 2, 8192, "batch"),
    (1, 1, 1, 8191, "none"),
    (2, 4, 6, 520, "shared"),
    # rows over 8192: 16 values per thread (the variants closest to the register budget)
    (1, 1, 2, 16384, "batch"),
    (1, 1, 1, 12289, "none"),
]


def run_masked(emu, b, h, sq, sk, kind, dtype, scale, seed):
    tdt = DTYPES[dtype]
    g = torch.Generator().manual_seed(seed)
    x = (4 * torch.randn(b, h, sq, sk, generator=g)).to(tdt)
    dy = torch.randn(b, h, sq, sk, generator=g).to(tdt)
    mask = None if kind == "none" else make_mask(b, sq, sk, b if kind == "batch" else 1, g)
    excluded = torch.zeros(b, 1, sq, sk, dtype=torch.bool) if mask is None else mask.expand(b, 1, sq, sk)

    y = emu.scaled_masked_softmax_fwd(to_emu(x), None if mask is None else mask.numpy(), scale, dtype)
    y_t = from_emu(y, tdt)
    dx = emu.scaled_softmax_bwd(to_emu(dy), y, scale, dtype)

    ref_y = softmax_ref(x.double() * scale, excluded)
    ref_dx = backward_ref(dy.double(), y_t.double(), scale)
    low_y = low_dx = None
    if dtype != "float32":
        low_y = softmax_ref(x * scale, excluded)
        low_dx = torch_lowp_bwd(dy, y_t, scale)
    if mask is not None:
        full = mask.all(-1, keepdim=True).expand(b, h, sq, sk)
        assert (y_t[full] == 0).all(), "fully masked rows must be exactly zero"
        assert (from_emu(dx, tdt)[full] == 0).all()
        assert (y_t[excluded.expand(b, h, sq, sk)] == 0).all(), "masked positions must be exactly zero"
    return (check("y", y_t, ref_y, low_y, dtype), check("dx", from_emu(dx, tdt), ref_dx, low_dx, dtype)), (y, dx)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize(
    "b,h,sq,sk,kind", MASKED_CASES, ids=[f"{c[0]}x{c[1]}x{c[2]}x{c[3]}-{c[4]}" for c in MASKED_CASES]
)
def test_masked_softmax_matches_float64(emu, b, h, sq, sk, kind, dtype):
    scale = 1 / math.sqrt(64) if sk % 2 else 1.0
    run_masked(emu, b, h, sq, sk, kind, dtype, scale, seed_of(b, h, sq, sk, kind, dtype))


CAUSAL_CASES = [(1, 1), (3, 7), (2, 64), (2, 100), (1, 513), (1, 1024)]


def run_causal(emu, n, sq, dtype, scale, seed):
    tdt = DTYPES[dtype]
    g = torch.Generator().manual_seed(seed)
    x = (4 * torch.randn(n, sq, sq, generator=g)).to(tdt)
    dy = torch.randn(n, sq, sq, generator=g).to(tdt)
    upper = torch.triu(torch.ones(sq, sq, dtype=torch.bool), diagonal=1)
    y = emu.scaled_upper_triang_softmax_fwd(to_emu(x), scale, dtype)
    y_t = from_emu(y, tdt)
    dx = emu.scaled_softmax_bwd(to_emu(dy), y, scale, dtype)
    assert (y_t[:, upper] == 0).all(), "entries above the diagonal must be exactly zero"
    ref_y = softmax_ref(x.double() * scale, upper)
    ref_dx = backward_ref(dy.double(), y_t.double(), scale)
    low_y = low_dx = None
    if dtype != "float32":
        low_y = softmax_ref(x * scale, upper)
        low_dx = torch_lowp_bwd(dy, y_t, scale)
    return (check("y", y_t, ref_y, low_y, dtype), check("dx", from_emu(dx, tdt), ref_dx, low_dx, dtype)), (y, dx)


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("n,sq", CAUSAL_CASES, ids=[f"{n}x{s}" for n, s in CAUSAL_CASES])
def test_causal_softmax_matches_float64(emu, n, sq, dtype):
    run_causal(emu, n, sq, dtype, 0.125, seed_of(n, sq, dtype))


def test_causal_softmax_long_fp32(emu):
    run_causal(emu, 1, 2048, "float32", 1 / math.sqrt(128), seed_of("long"))


@pytest.mark.parametrize(
    "kind,args,dtype",
    [
        ("masked", (2, 2, 9, 96, "batch"), "float16"),
        ("masked", (1, 2, 3, 3000, "shared"), "float32"),
        ("causal", (2, 77), "bfloat16"),
        ("causal", (1, 300), "float32"),
    ],
)
def test_schedules_give_identical_results(emu, kind, args, dtype):
    """Fixed-order reductions: every thread order gives the same bits (and passes)."""
    outs = []
    for schedule in [("in_order", 0), ("reverse", 0), ("random", 3), ("random", 4)]:
        emu.set_schedule(*schedule)
        if kind == "masked":
            _, out = run_masked(emu, *args, dtype, 0.5, seed=21)
        else:
            _, out = run_causal(emu, *args, dtype, 0.5, seed=21)
        outs.append(out)
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("shape", [(3, 2, 4, 200), (1, 1, 2, 9000)])  # 9000: vector loads, 16 values, ragged
def test_backward_in_place(emu, dtype, shape):
    tdt = DTYPES[dtype]
    g = torch.Generator().manual_seed(5)
    x = torch.randn(*shape, generator=g).to(tdt)
    dy = torch.randn(*shape, generator=g).to(tdt)
    y = emu.scaled_masked_softmax_fwd(to_emu(x), None, 0.3, dtype)
    np.testing.assert_array_equal(
        emu.scaled_softmax_bwd(to_emu(dy), y, 0.3, dtype, inplace=True),
        emu.scaled_softmax_bwd(to_emu(dy), y, 0.3, dtype),
    )


def test_large_scores_do_not_overflow(emu):
    x = torch.tensor([[[[1e4, 1e4 - 1, -1e4, 0.0]]]])
    y = torch.from_numpy(emu.scaled_masked_softmax_fwd(x.numpy(), None, 10.0, "float32"))
    ref = torch.softmax(x.double() * 10.0, -1)
    assert rel_err(y, ref) <= FP32_TOL


def test_argument_errors(emu):
    with pytest.raises(ValueError, match="1..16384"):
        emu.scaled_masked_softmax_fwd(np.zeros((1, 1, 1, 16385), np.float32), None, 1.0, "float32")
    with pytest.raises(ValueError, match="mask_batch"):
        emu.scaled_masked_softmax_fwd(np.zeros((3, 1, 2, 8), np.float32), np.zeros((2, 1, 2, 8), bool), 1.0, "float32")
    with pytest.raises(ValueError, match="mask"):
        emu.scaled_masked_softmax_fwd(np.zeros((1, 1, 2, 8), np.float32), np.zeros((1, 1, 2, 9), bool), 1.0, "float32")
    with pytest.raises(ValueError, match="sq, sq"):
        emu.scaled_upper_triang_softmax_fwd(np.zeros((1, 2, 3), np.float32), 1.0, "float32")
    with pytest.raises(ValueError, match="same shape"):
        emu.scaled_softmax_bwd(np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32), 1.0, "float32")
