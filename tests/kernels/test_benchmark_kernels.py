"""benchmarks/kernel_speed.py: exits 0 with a clear message without a GPU; its peak table and FLOP count."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tool_scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "kernel_speed.py"


def _load():
    return load_script(SCRIPT, "bench_kernels")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the script would run the benchmark")
def test_without_gpu_says_so_and_exits_0():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--iters", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "no GPU is present" in proc.stdout


def test_peak_table_and_flops():
    bench = _load()
    h100 = bench.peak_for("NVIDIA H100 80GB HBM3")
    assert (h100.name, h100.tensor_tflops, h100.tb_per_s) == ("H100", 989.0, 3.35)
    assert bench.peak_for("NVIDIA H100 PCIe").tb_per_s == 2.0
    assert bench.peak_for("NVIDIA H200").tb_per_s == 4.8
    assert bench.peak_for("NVIDIA A100-SXM4-80GB").tflops(torch.float32) == 19.5
    assert bench.peak_for("NVIDIA A100-SXM4-40GB").tb_per_s == 1.555
    assert bench.peak_for("Some Other GPU") is None
    # 4 * b * h * s^2 * d forward; causal halves it; the backward is 2.5 times the forward
    assert bench.attention_flops(2, 128, 128, 4, 64, causal=False, backward=False) == 4 * 2 * 4 * 128 * 128 * 64
    assert bench.attention_flops(2, 128, 128, 4, 64, causal=True, backward=True) == 2.5 * 2 * 2 * 4 * 128 * 128 * 64
    table = bench.format_table(
        [bench.Row("attention fwd", "csrc", "b1", 2.0, tflops=494.5, max_diff=1e-3)], h100, torch.bfloat16
    )
    assert "50.0" in table and "494.5" in table


class _WallEvent:
    """Stands in for torch.cuda.Event on CPU (wall-clock milliseconds)."""

    def __init__(self, enable_timing=False):
        self.t = None

    def record(self, stream=None):
        import time

        self.t = time.perf_counter()

    def synchronize(self):
        pass

    def elapsed_time(self, other):
        return (other.t - self.t) * 1000.0


def test_every_benchmark_runs_on_cpu_stand_ins(monkeypatch):
    """The GPU code path, end to end on tiny shapes: CUDA tensors become CPU tensors (the project's
    CPU compatibility layer), CUDA events wall-clock timers, kernels="csrc" falls back to PyTorch."""
    from megatron_biomed.parallel import cpu

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: run benchmarks/kernel_speed.py itself")
    cpu.apply_cpu_patches()
    monkeypatch.setattr(torch.cuda, "Event", _WallEvent)
    bench = _load()
    rows = bench.bench_norms(torch.float32, iters=1, rows=8, hidden=64)
    rows += bench.bench_softmax(torch.float32, iters=1, b=1, h=2, s=16)
    rows += bench.bench_flash(torch.float32, iters=1, b=1, s=32, h=4, hkv=4, d=64)
    ops = {(r.op, r.impl) for r in rows}
    assert ("layer_norm fwd+bwd", "csrc") in ops and ("causal softmax fwd", "torch eager") in ops
    assert ("attention fwd+bwd", "torch sdpa") in ops and ("attention fwd", "csrc") in ops
    assert all(r.ms > 0 for r in rows)
    # same math as the baselines (here both run PyTorch; on a GPU this column checks the kernels)
    assert all(r.max_diff is None or r.max_diff < 1e-4 for r in rows)
    table = bench.format_table(rows, bench.peak_for("NVIDIA H100 80GB HBM3"), torch.float32)
    assert len(table.splitlines()) == len(rows) + 2
