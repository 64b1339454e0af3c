"""LayerNorm / RMSNorm kernels (csrc/kernels/layer_norm.cuh) on the CPU emulator vs float64 torch.

Every case draws fresh random inputs (seeded per case, so a failure reproduces), rounds them to the
dtype under test, and compares the kernel against torch in float64 on those same values.
Error measure: max |out - ref| / max |ref| over the tensor (normwise relative). fp32 must be within
1e-5; fp16/bf16 within 2x the error torch itself makes doing the computation at that precision
(plus an absolute floor of 1e-6 of max |ref|).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numerics import rel_err

from megatron_biomed.kernels.emu_ops import from_numpy as from_emu
from megatron_biomed.kernels.emu_ops import to_numpy as to_emu

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
FP32_TOL = 1e-5
FLOOR = 1e-6
EPS = 1e-5

# (rows, cols): small and odd sizes, every vector-width divisibility, and 64..16384 hidden sizes
# (the big ones with few rows); 300 and 1000 rows exceed the 256 partial sums of dgamma/dbeta.
SHAPES = [
    (1, 64),
    (5, 65),
    (300, 64),
    (33, 100),
    (16, 128),
    (9, 257),
    (4, 768),
    (7, 1000),
    (3, 1024),
    (4, 2048),
    (3, 3000),
    (2, 4096),
    (2, 5120),
    (1, 8191),
    (2, 8192),
    (1, 12288),
    (1, 16383),
    (2, 16384),
    (1000, 72),
]


def check(
    name: str,
    ours: torch.Tensor,
    ref: torch.Tensor,
    torch_lowp: torch.Tensor | None,
    dtype: str,
    errors: dict | None = None,
) -> None:
    assert torch.isfinite(ours.double()).all(), f"{name}: non-finite output"
    err = rel_err(ours, ref)
    if dtype == "float32":
        bound = FP32_TOL
    else:
        bound = 2 * rel_err(torch_lowp, ref) + FLOOR
    if errors is not None:
        errors[name] = err
    assert err <= bound, f"{name} ({dtype}): error {err:.3g} > bound {bound:.3g}"


def make_inputs(rows: int, cols: int, dtype: torch.dtype, seed: int):
    g = torch.Generator().manual_seed(seed)
    # an offset mean and a spread of scales per row, so the two-pass statistics matter
    x = torch.randn(rows, cols, generator=g) * (0.5 + 2 * torch.rand(rows, 1, generator=g)) + 3 * torch.randn(
        rows, 1, generator=g
    )
    gamma = 1 + 0.5 * torch.randn(cols, generator=g)
    beta = 0.3 * torch.randn(cols, generator=g)
    dy = torch.randn(rows, cols, generator=g)
    return [t.to(dtype) for t in (x, gamma, beta, dy)]


def torch_layer_norm(x, gamma, beta, dy, rms: bool):
    """Forward and backward in x's dtype with torch's own kernels; returns y, dx, dgamma, dbeta."""
    x = x.clone().requires_grad_()
    gamma = gamma.clone().requires_grad_() if gamma is not None else None
    beta = beta.clone().requires_grad_() if beta is not None else None
    if rms:
        y = F.rms_norm(x, (x.shape[-1],), gamma, EPS)
    else:
        y = F.layer_norm(x, (x.shape[-1],), gamma, beta, EPS)
    y.backward(dy)
    return (y.detach(), x.grad, gamma.grad if gamma is not None else None, beta.grad if beta is not None else None)


def run_case(emu, rows, cols, dtype, rms, seed, use_gamma=True, use_beta=True, errors=None):
    tdt = DTYPES[dtype]
    x, gamma, beta, dy = make_inputs(rows, cols, tdt, seed)
    gamma = gamma if use_gamma else None
    beta = beta if (use_beta and not rms) else None

    if rms:
        y, rstd = emu.rms_norm_fwd(to_emu(x), None if gamma is None else to_emu(gamma), EPS, dtype)
        dx, dgamma = emu.rms_norm_bwd(to_emu(dy), to_emu(x), None if gamma is None else to_emu(gamma), rstd, dtype)
        dbeta, mean = None, None
    else:
        y, mean, rstd = emu.layer_norm_fwd(
            to_emu(x), None if gamma is None else to_emu(gamma), None if beta is None else to_emu(beta), EPS, dtype
        )
        dx, dgamma, dbeta = emu.layer_norm_bwd(
            to_emu(dy), to_emu(x), None if gamma is None else to_emu(gamma), mean, rstd, dtype, beta is not None
        )

    def d(t):
        return None if t is None else t.double()

    ref = torch_layer_norm(d(x), d(gamma), d(beta), d(dy), rms)
    low = torch_layer_norm(x, gamma, beta, dy, rms) if dtype != "float32" else (None,) * 4

    xd = x.double()
    if rms:
        ref_rstd = torch.rsqrt(xd.pow(2).mean(-1) + EPS)
    else:
        ref_mean = xd.mean(-1)
        ref_rstd = torch.rsqrt(xd.var(-1, unbiased=False) + EPS)
        np.testing.assert_allclose(mean, ref_mean.numpy(), rtol=1e-5, atol=1e-5 * float(xd.abs().max()))
    np.testing.assert_allclose(rstd, ref_rstd.numpy(), rtol=1e-5)

    check("y", from_emu(y, tdt), ref[0], low[0], dtype, errors)
    check("dx", from_emu(dx, tdt), ref[1], low[1], dtype, errors)
    if gamma is not None:
        check("dgamma", from_emu(dgamma, tdt), ref[2], low[2], dtype, errors)
    else:
        assert dgamma is None
    if beta is not None:
        check("dbeta", from_emu(dbeta, tdt), ref[3], low[3], dtype, errors)
    return y, dx, dgamma, dbeta


@pytest.mark.parametrize("rms", [False, True], ids=["layernorm", "rmsnorm"])
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("rows,cols", SHAPES, ids=[f"{r}x{c}" for r, c in SHAPES])
def test_norm_matches_float64(emu, rows, cols, dtype, rms):
    run_case(emu, rows, cols, dtype, rms, seed=zlib.crc32(f"{rows} {cols} {dtype} {rms}".encode()))


@pytest.mark.parametrize("rms", [False, True], ids=["layernorm", "rmsnorm"])
@pytest.mark.parametrize("use_gamma,use_beta", [(False, False), (True, False), (False, True)])
def test_without_affine_parameters(emu, rms, use_gamma, use_beta):
    run_case(emu, 6, 320, "float32", rms, seed=3, use_gamma=use_gamma, use_beta=use_beta)
    run_case(emu, 6, 321, "bfloat16", rms, seed=4, use_gamma=use_gamma, use_beta=use_beta)


@pytest.mark.parametrize("rms", [False, True], ids=["layernorm", "rmsnorm"])
@pytest.mark.parametrize(
    "rows,cols,dtype",
    [
        (8, 96, "float16"),
        (3, 2500, "float32"),
        (300, 64, "bfloat16"),
        (2, 1024, "bfloat16"),
        (2, 4099, "float32"),
        (1, 12289, "bfloat16"),
    ],
)
def test_schedules_give_identical_results(emu, rows, cols, dtype, rms):
    """Reductions are in a fixed order, so every thread order must give the same bits (and pass)."""
    results = []
    for schedule in [("in_order", 0), ("reverse", 0), ("random", 5), ("random", 6)]:
        emu.set_schedule(*schedule)
        results.append(run_case(emu, rows, cols, dtype, rms, seed=11))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            if a is not None:
                np.testing.assert_array_equal(a, b)


def test_fully_zero_and_constant_rows(emu):
    """A constant row has zero variance: y = beta exactly (rstd = 1/sqrt(eps)), dx finite."""
    x = np.full((3, 256), 2.5, dtype=np.float32)
    x[1] = 0.0
    gamma = np.linspace(0.5, 1.5, 256, dtype=np.float32)
    beta = np.linspace(-1, 1, 256, dtype=np.float32)
    y, mean, rstd = emu.layer_norm_fwd(x, gamma, beta, EPS, "float32")
    np.testing.assert_array_equal(y, np.broadcast_to(beta, y.shape))
    np.testing.assert_allclose(rstd, 1 / np.sqrt(EPS), rtol=1e-6)
    dx, _, _ = emu.layer_norm_bwd(np.ones_like(x), x, gamma, mean, rstd, "float32")
    assert np.isfinite(dx).all()


def test_argument_errors(emu):
    with pytest.raises(ValueError, match="cols <= 16384"):
        emu.layer_norm_fwd(np.zeros((1, 16385), np.float32), None, None, EPS, "float32")
    with pytest.raises(ValueError, match="2-D"):
        emu.layer_norm_fwd(np.zeros(16, np.float32), None, None, EPS, "float32")
    with pytest.raises(TypeError, match="float32 array"):
        emu.layer_norm_fwd(np.zeros((2, 16), np.float64), None, None, EPS, "float32")
    with pytest.raises(TypeError, match="uint16"):
        emu.layer_norm_fwd(np.zeros((2, 16), np.float32), None, None, EPS, "bfloat16")
    with pytest.raises(ValueError, match="dtype"):
        emu.layer_norm_fwd(np.zeros((2, 16), np.float32), None, None, EPS, "float64")
    y, mean, _ = emu.layer_norm_fwd(np.zeros((0, 16), np.float32), None, None, EPS, "float32")
    assert y.shape == (0, 16) and mean.shape == (0,)


def test_fp16_accepts_float16_or_bits(emu):
    x, gamma, beta, _ = make_inputs(4, 200, torch.float16, seed=9)
    y1, _, _ = emu.layer_norm_fwd(x.numpy(), gamma.numpy(), beta.numpy(), EPS, "float16")
    y2, _, _ = emu.layer_norm_fwd(
        x.numpy().view(np.uint16), gamma.numpy().view(np.uint16), beta.numpy().view(np.uint16), EPS, "float16"
    )
    assert y1.dtype == np.float16
    np.testing.assert_array_equal(y1, y2)
