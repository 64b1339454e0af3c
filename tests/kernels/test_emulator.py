"""Self-tests of the CPU emulator of CUDA's execution model (csrc/emu), through test-only kernels.

What CUDA guarantees is written out here in Python (index layout, warp formation with threadIdx.x
fastest, shuffle semantics with widths, barrier, shared memory, atomics, fp16/bf16 rounding as
torch rounds), and the emulator's kernels must reproduce it. The last tests are the reason the
scheduling knob exists: a reduction with a removed barrier or a wrong shuffle offset must give
wrong results, and the correct one must be right under every schedule.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

SCHEDULES = [("in_order", 0), ("reverse", 0), ("random", 1), ("random", 7)]
IDX, UP, DOWN, XOR = 0, 1, 2, 3


# --------------------------------------------------------------------------------------------
# Index layout and warp formation
@pytest.mark.parametrize(
    "grid,block",
    [
        ((3, 1, 1), (100, 1, 1)),
        ((2, 3, 1), (8, 12, 1)),
        ((1, 2, 2), (4, 4, 6)),
        ((2, 1, 1), (5, 3, 7)),
        ((1, 1, 1), (1024, 1, 1)),
        ((1, 1, 1), (1, 1, 64)),
    ],
)
@pytest.mark.parametrize("schedule", SCHEDULES[:3])
def test_layout_and_warps_x_fastest(emu, grid, block, schedule):
    emu.set_schedule(*schedule)
    rec = emu.test_layout(grid, block)
    bx, by, bz = block
    gx, gy, gz = grid
    nthreads = bx * by * bz
    expected_rows = []
    for zb in range(gz):
        for yb in range(gy):
            for xb in range(gx):
                for z in range(bz):
                    for y in range(by):
                        for x in range(bx):
                            lin = x + y * bx + z * bx * by
                            warp_first = (lin // 32) * 32
                            lanes = min(32, nthreads - warp_first)
                            ballot = (1 << lanes) - 1
                            ballot = ballot - (1 << 32) if ballot >= (1 << 31) else ballot  # as int32
                            expected_rows.append([x, y, z, xb, yb, zb, bx, by, bz, gx, gy, gz, warp_first, ballot])
    np.testing.assert_array_equal(rec, np.array(expected_rows, dtype=np.int64))


# --------------------------------------------------------------------------------------------
# Shuffles
def _shuffle_expected(threads: int, kind: int, arg: int, width: int, mask: int) -> np.ndarray:
    """CUDA's documented semantics, thread by thread (value of thread i is 3*i + 1)."""
    out = np.full(threads, -1, dtype=np.int64)
    for t in range(threads):
        lane, warp_base = t % 32, (t // 32) * 32
        if not (mask >> lane) & 1:
            continue
        seg = lane - lane % width  # first lane of this thread's width-segment
        if kind == IDX:
            src = seg + arg % width
        elif kind == UP:
            src = lane - arg if lane - arg >= seg else lane
        elif kind == DOWN:
            src = lane + arg if lane + arg < seg + width else lane
        else:
            j = lane ^ arg
            src = j if j < seg + width else lane  # later segments are out of reach
        out[t] = 3 * (warp_base + src) + 1
    return out


SHUFFLE_CASES = [
    # threads, kind, arg, width, mask
    (64, XOR, 1, 32, 0xFFFFFFFF),
    (64, XOR, 16, 32, 0xFFFFFFFF),
    (64, XOR, 5, 32, 0xFFFFFFFF),
    (64, XOR, 4, 8, 0xFFFFFFFF),
    (64, XOR, 8, 8, 0xFFFFFFFF),
    (96, XOR, 2, 4, 0xFFFFFFFF),
    (64, DOWN, 1, 32, 0xFFFFFFFF),
    (64, DOWN, 16, 32, 0xFFFFFFFF),
    (64, DOWN, 3, 8, 0xFFFFFFFF),
    (64, DOWN, 31, 32, 0xFFFFFFFF),
    (64, UP, 1, 32, 0xFFFFFFFF),
    (64, UP, 7, 16, 0xFFFFFFFF),
    (64, UP, 2, 2, 0xFFFFFFFF),
    (64, IDX, 0, 32, 0xFFFFFFFF),
    (64, IDX, 13, 32, 0xFFFFFFFF),
    (64, IDX, 37, 32, 0xFFFFFFFF),
    (64, IDX, 3, 4, 0xFFFFFFFF),
    (64, IDX, 5, 16, 0xFFFFFFFF),
    (64, XOR, 1, 16, 0x0000FFFF),
    (64, DOWN, 4, 16, 0xFFFF0000),
    (64, IDX, 2, 8, 0x00FF00FF),
    (48, XOR, 8, 16, 0xFFFFFFFF),
    (48, IDX, 0, 32, 0x0000FFFF),
    (32, XOR, 1, 1, 0xFFFFFFFF),
]


@pytest.mark.parametrize("threads,kind,arg,width,mask", SHUFFLE_CASES)
def test_shuffles(emu, threads, kind, arg, width, mask):
    expected = _shuffle_expected(threads, kind, arg, width, mask)
    for schedule in SCHEDULES:
        emu.set_schedule(*schedule)
        got = emu.test_shuffle_int(threads, kind, arg, width, mask)
        np.testing.assert_array_equal(got, expected, err_msg=f"int, schedule {schedule}")
    got_d = emu.test_shuffle_double(threads, kind, arg, width, mask)  # an 8-byte type
    np.testing.assert_array_equal(got_d, expected.astype(np.float64))


def test_votes_and_half_shuffle(emu):
    rng = np.random.default_rng(0)
    for pred in (rng.integers(0, 2, 64), np.ones(64, dtype=np.int64), np.zeros(64, dtype=np.int64)):
        out = emu.test_votes(pred.astype(np.int32))
        for t in range(64):
            w = pred[(t // 32) * 32 : (t // 32) * 32 + 32]
            ballot = sum(1 << i for i in range(32) if w[i])
            assert int(out[t, 0]) & 0xFFFFFFFF == ballot
            assert out[t, 1] == int(w.any()) and out[t, 2] == int(w.all())
            assert out[t, 3] == 2 * (t ^ 1) + 1  # (t^1) + 0.5 through a __half shuffle, doubled


# --------------------------------------------------------------------------------------------
# Barrier and shared memory
@pytest.mark.parametrize("threads", [32, 96, 256, 1000])
def test_barrier_under_all_schedules(emu, threads):
    rng = np.random.default_rng(threads)
    shift = rng.integers(1, threads, size=6).astype(np.int32)
    blocks = 3
    acc = np.array([[t + 1000 * b for t in range(threads)] for b in range(blocks)], dtype=np.int64)
    for r, s in enumerate(shift):
        acc = (acc[:, (np.arange(threads) + s) % threads] * 3 + r) % (1 << 32)
    expected = np.where(acc >= 1 << 31, acc - (1 << 32), acc)  # int32 wrap-around
    for schedule in SCHEDULES:
        emu.set_schedule(*schedule)
        np.testing.assert_array_equal(emu.test_barrier(blocks, threads, shift), expected, err_msg=str(schedule))


def test_dynamic_smem_poisoned_aligned_and_limited(emu):
    out = emu.test_smem_probe(64, 64 * 4)
    assert (out[:, 0] == 0xFFFFFFFF).all(), "never-written dynamic shared memory should read as 0xFF bytes"
    assert (out[:, 1] == 0).all(), "dynamic shared memory should be 16-byte aligned"
    emu.test_smem_probe(64, 48 * 1024)  # the default limit itself is fine
    with pytest.raises(RuntimeError, match="MBK_SET_MAX_DYNAMIC_SMEM"):
        emu.test_smem_probe(64, 64 * 1024)
    emu.test_smem_probe(64, 64 * 1024, max_smem_bytes=100 * 1024)  # allowed after opting in
    with pytest.raises(RuntimeError, match="227 KiB"):
        emu.test_smem_probe(64, 64 * 1024, max_smem_bytes=228 * 1024)


# --------------------------------------------------------------------------------------------
# Atomics
@pytest.mark.parametrize("schedule", SCHEDULES[:3])
def test_atomics(emu, schedule):
    emu.set_schedule(*schedule)
    blocks, threads = 5, 96
    rng = np.random.default_rng(3)
    xf = rng.integers(-50, 50, blocks * threads).astype(np.float32) / 4  # sums are exact in fp32
    xi = rng.integers(-(10**6), 10**6, blocks * threads).astype(np.int32)
    sf, si, mi, cnt = emu.test_atomics(blocks, threads, xf, xi)
    assert sf == float(xf.astype(np.float64).sum())
    assert si == int(xi.astype(np.int64).sum())
    assert mi == int(xi.max())
    assert cnt == blocks * threads


# --------------------------------------------------------------------------------------------
# fp16 / bf16 conversions against torch's rounding
def _conversion_inputs() -> np.ndarray:
    rng = np.random.default_rng(11)
    parts = [
        rng.standard_normal(20000) * 10.0 ** rng.integers(-8, 6, 20000),
        rng.integers(0, 2**32, 50000, dtype=np.uint64).astype(np.uint32).view(np.float32),  # any bit pattern
        np.array(
            [
                0.0,
                -0.0,
                np.inf,
                -np.inf,
                np.nan,
                65504,
                65519.99,
                65520,
                65536,
                1e-8,
                6e-8,
                2.98e-8,
                5.960464477539063e-08,
                2.9802322387695312e-08,
                6.103515625e-05,
                6.097555e-05,
                3.3895313892515355e38,
                3.4028234663852886e38,
                1.1754942e-38,
                1e-45,
            ],
            dtype=np.float32,
        ),
    ]
    # exact ties: a 12-bit odd significand is half-way between two fp16 values (11 bits), a 9-bit
    # one between two bf16 values (8 bits); exponents cover the normal ranges and the overflow edge
    k16 = rng.integers(2**10, 2**11, 4000)
    e16 = rng.integers(-13, 17, 4000).astype(np.float64)
    parts.append((2 * k16 + 1) * 2.0 ** (e16 - 12))
    k8 = rng.integers(2**7, 2**8, 4000)
    e8 = rng.integers(-120, 121, 4000).astype(np.float64)
    parts.append((2 * k8 + 1) * 2.0 ** (e8 - 9))
    ties_denorm = (np.arange(1, 2000, 2) * 2.0**-25).astype(np.float32)  # half-way between fp16 denormals
    parts.append(ties_denorm)
    x = np.concatenate([p.astype(np.float32) for p in parts])
    return np.concatenate([x, -x])


def test_tie_inputs_are_ties():
    """Many conversion inputs sit exactly half-way between two fp16 (or two bf16) neighbours."""
    x = _conversion_inputs()
    x = x[np.isfinite(x) & (np.abs(x) < 65504)].astype(np.float64)
    h = x.astype(np.float16)
    up = np.nextafter(h, np.float16(np.inf)).astype(np.float64)
    dn = np.nextafter(h, np.float16(-np.inf)).astype(np.float64)
    hd = h.astype(np.float64)
    assert ((x == (hd + up) / 2) | (x == (hd + dn) / 2)).sum() > 3000
    b = torch.from_numpy(x).float().to(torch.bfloat16)
    bd = b.double().numpy()
    bits = b.view(torch.int16).numpy().astype(np.int32)
    b_up = torch.from_numpy((bits + 1).astype(np.int16)).view(torch.bfloat16).double().numpy()
    b_dn = torch.from_numpy((bits - 1).astype(np.int16)).view(torch.bfloat16).double().numpy()
    assert ((x == (bd + b_up) / 2) | (x == (bd + b_dn) / 2)).sum() > 3000


def _same_bits_or_both_nan(got_bits: np.ndarray, ref: torch.Tensor, what: str) -> None:
    ref_bits = ref.view(torch.int16).numpy().view(np.uint16)
    ref_nan = torch.isnan(ref).numpy()
    got_f = torch.from_numpy(got_bits.view(np.int16)).view(ref.dtype).float().numpy()
    assert (np.isnan(got_f) == ref_nan).all(), f"{what}: NaN-ness differs"
    bad = ~ref_nan & (got_bits != ref_bits)
    assert not bad.any(), (
        f"{what}: {bad.sum()} values round differently, e.g. bits {got_bits[bad][:5]} vs {ref_bits[bad][:5]}"
    )


def test_conversions_match_torch(emu):
    x = _conversion_inputs()
    assert x.dtype == np.float32  # rounding straight from float64 would be a different test
    h, b, back_h, back_b = emu.test_convert(x)
    xt = torch.from_numpy(x)
    _same_bits_or_both_nan(h, xt.to(torch.float16), "float->half")
    _same_bits_or_both_nan(b, xt.to(torch.bfloat16), "float->bfloat16")
    np.testing.assert_array_equal(back_h, xt.to(torch.float16).float().numpy())
    np.testing.assert_array_equal(back_b, xt.to(torch.bfloat16).float().numpy())
    # every 16-bit pattern back to float, exactly (NaNs compared as NaN)
    bits = np.arange(2**16, dtype=np.uint16)
    fh, fb = emu.test_from_bits(bits)
    ref_h = torch.from_numpy(bits.view(np.int16)).view(torch.float16).float().numpy()
    ref_b = torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(fh, ref_h)
    np.testing.assert_array_equal(fb, ref_b)
    assert np.signbit(fh[0x8000]) and np.signbit(fb[0x8000])  # -0.0 keeps its sign


# --------------------------------------------------------------------------------------------
# Misuse is reported, not hung on
@pytest.mark.parametrize(
    "what,message",
    [
        ("divergent_barrier", "deadlock"),
        ("early_exit_shuffle", "deadlock"),
        ("partial_warp_read", "does not take part"),
        ("too_many_threads", "1024 threads"),
        ("block_z", "1024 threads"),
        ("sync_outside_kernel", "outside a kernel"),
    ],
)
def test_misuse_is_reported(emu, what, message):
    with pytest.raises(RuntimeError, match=message):
        emu.test_misuse(what)
    # the emulator is usable again afterwards
    np.testing.assert_array_equal(
        emu.test_shuffle_int(32, XOR, 1, 32, 0xFFFFFFFF), _shuffle_expected(32, XOR, 1, 32, 0xFFFFFFFF)
    )


# --------------------------------------------------------------------------------------------
# The proof: broken kernels fail, the correct one passes under every schedule
def _rows(seed: int, rows: int = 16, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((rows, n)).astype(np.float32)
    return x, x.astype(np.float64).sum(axis=1)


@pytest.mark.parametrize("threads", [64, 128, 256])
def test_correct_block_sum_passes_every_schedule(emu, threads):
    x, ref = _rows(threads)
    for schedule in SCHEDULES + [("random", s) for s in range(20, 26)]:
        emu.set_schedule(*schedule)
        np.testing.assert_allclose(emu.test_block_sum(x, threads, 0), ref, rtol=1e-5, atol=1e-4, err_msg=str(schedule))


@pytest.mark.parametrize("threads", [64, 128, 256])
def test_removed_barrier_is_caught_by_adversarial_schedules(emu, threads):
    x, ref = _rows(100 + threads)

    def wrong(schedule) -> bool:
        emu.set_schedule(*schedule)
        got = emu.test_block_sum(x, threads, 1)
        return not np.allclose(got, ref, rtol=1e-5, atol=1e-4)

    # In order, warp 0 reads the other warps' partials before they are written.
    assert wrong(("in_order", 0))
    # Random orders catch it too (with 16 rows at least one row goes wrong for every seed tried).
    assert all(wrong(("random", seed)) for seed in range(5))
    # Reverse order happens to write every partial first: the missing barrier hides there, which is
    # why one schedule is not enough.
    assert not wrong(("reverse", 0))


def test_wrong_shuffle_offset_is_caught(emu):
    x, ref = _rows(5)
    for schedule in SCHEDULES:
        emu.set_schedule(*schedule)
        got = emu.test_block_sum(x, 128, 2)
        assert not np.allclose(got, ref, rtol=1e-5, atol=1e-4), schedule


@pytest.mark.parametrize("threads", [64, 256])
def test_write_after_read_race_is_caught(emu, threads):
    """Reusing shared partials without a barrier: caught only because a warp may run ahead."""
    x = np.random.default_rng(threads).standard_normal((8, 200)).astype(np.float32)
    xd = x.astype(np.float64)
    ref = np.stack([xd.sum(1), (xd * xd).sum(1)], axis=1)[:, None, :]  # every thread's result
    for schedule in SCHEDULES:
        emu.set_schedule(*schedule)
        got = emu.test_two_sums(x, threads, False)
        np.testing.assert_allclose(got, np.broadcast_to(ref, got.shape), rtol=1e-5, atol=1e-4, err_msg=str(schedule))
    emu.set_schedule("in_order", 0)  # warp 0 overwrites its partial before the last warp reads it
    assert not np.allclose(emu.test_two_sums(x, threads, True), ref, rtol=1e-5, atol=1e-4)
    emu.set_schedule("reverse", 0)  # the mirror image: the last warp runs ahead
    assert not np.allclose(emu.test_two_sums(x, threads, True), ref, rtol=1e-5, atol=1e-4)
