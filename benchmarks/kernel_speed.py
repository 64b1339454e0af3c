"""Time the csrc CUDA kernels against PyTorch baselines and print a table.

For every op: our kernel (``megatron_biomed.kernels`` with kernels="csrc"), PyTorch eager, and for
attention ``torch.nn.functional.scaled_dot_product_attention`` and, where installed, the flash-attn
package. Reports milliseconds, achieved TFLOP/s (attention) or GB/s (norms, softmax) and the share
of the device's peak (known peaks by device name below), plus the largest difference from the
PyTorch eager result.

    python benchmarks/kernel_speed.py                # all ops, bf16
    python benchmarks/kernel_speed.py --ops flash --dtype fp16 --iters 50

Needs a CUDA device and the built extension (``pip install --no-build-isolation -e .``). Without a
GPU it says so and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Dense peaks without sparsity: (bf16/fp16 tensor-core TFLOP/s, fp32 TFLOP/s, memory TB/s).
# First matching substring of torch.cuda.get_device_name() wins, so specific names come first.
PEAKS: list[tuple[str, tuple[float, float, float]]] = [
    ("H200", (989.0, 67.0, 4.8)),
    ("H100 PCIe", (756.0, 51.0, 2.0)),
    ("H100 NVL", (835.0, 60.0, 3.9)),
    ("H100", (989.0, 67.0, 3.35)),  # SXM5
    ("A100-SXM4-80GB", (312.0, 19.5, 2.039)),
    ("A100 80GB PCIe", (312.0, 19.5, 1.935)),
    ("A100", (312.0, 19.5, 1.555)),  # 40 GB
    ("L40S", (362.0, 91.6, 0.864)),
    ("A10", (125.0, 31.2, 0.6)),
]

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class Peak:
    name: str
    tensor_tflops: float  # bf16 / fp16
    fp32_tflops: float
    tb_per_s: float

    def tflops(self, dtype: torch.dtype) -> float:
        return self.fp32_tflops if dtype == torch.float32 else self.tensor_tflops


def peak_for(device_name: str) -> Peak | None:
    """Known peak throughput of a device by its CUDA name, or None if it is not in the table."""
    for key, (tc, fp32, bw) in PEAKS:
        if key.lower() in device_name.lower():
            return Peak(key, tc, fp32, bw)
    return None


def attention_flops(b: int, sq: int, sk: int, h: int, d: int, causal: bool, backward: bool) -> float:
    """Matmul FLOPs of attention (2 GEMMs forward, 5 backward), halved for a causal square mask."""
    fwd = 4.0 * b * h * sq * sk * d
    if causal:
        fwd *= 0.5
    return fwd * 2.5 if backward else fwd


def time_cuda(fn: Callable[[], object], iters: int, warmup: int = 5) -> float:
    """Median milliseconds of ``fn`` over ``iters`` runs, timed with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


@dataclass
class Row:
    op: str
    impl: str
    shape: str
    ms: float
    tflops: float | None = None
    gbps: float | None = None
    max_diff: float | None = None


def _fwd_bwd(fn: Callable[[], torch.Tensor], inputs: list[torch.Tensor], grad: torch.Tensor):
    def run():
        for t in inputs:
            t.grad = None
        fn().backward(grad)

    return run


def bench_norms(dtype, iters, rows=16384, hidden=4096) -> list[Row]:
    from megatron_biomed.kernels.functions import layer_norm, rms_norm

    out = []
    x = torch.randn(rows, hidden, device="cuda", dtype=dtype, requires_grad=True)
    w = torch.randn(hidden, device="cuda", dtype=dtype, requires_grad=True)
    b = torch.randn(hidden, device="cuda", dtype=dtype, requires_grad=True)
    dy = torch.randn_like(x)
    el = x.element_size()
    fwd_bytes = 2 * rows * hidden * el  # read x, write y (params and stats are small)
    bwd_bytes = 3 * rows * hidden * el  # read dy and x, write dx
    shape = f"{rows}x{hidden}"
    cases = {
        "layer_norm": (lambda k: layer_norm(x, w, b, 1e-5, kernels=k), lambda: F.layer_norm(x, (hidden,), w, b, 1e-5)),
        "rms_norm": (lambda k: rms_norm(x, w, 1e-5, kernels=k), lambda: F.rms_norm(x, (hidden,), w, 1e-5)),
    }
    for name, (ours, eager) in cases.items():
        ref = eager().detach()
        for impl, fn in (("csrc", lambda o=ours: o("csrc")), ("torch eager", eager)):
            diff = (fn().detach().float() - ref.float()).abs().max().item()
            ms = time_cuda(lambda f=fn: f(), iters)
            out.append(Row(f"{name} fwd", impl, shape, ms, gbps=fwd_bytes / ms / 1e6, max_diff=diff))
            ms = time_cuda(_fwd_bwd(fn, [x, w, b], dy), iters)
            out.append(Row(f"{name} fwd+bwd", impl, shape, ms, gbps=(fwd_bytes + bwd_bytes) / ms / 1e6))
    return out


def bench_softmax(dtype, iters, b=8, h=16, s=1024) -> list[Row]:
    from megatron_biomed.kernels.functions import scaled_causal_softmax, scaled_masked_softmax

    out = []
    x = torch.randn(b, h, s, s, device="cuda", dtype=dtype, requires_grad=True)
    mask = torch.rand(b, 1, s, s, device="cuda") < 0.1
    causal = torch.triu(torch.ones(s, s, device="cuda", dtype=torch.bool), 1).view(1, 1, s, s)
    dy = torch.randn_like(x)
    nbytes = 2 * x.numel() * x.element_size()  # read x, write y
    shape = f"{b}x{h}x{s}x{s}"

    def eager(m):  # megatron's unfused path: scale, mask fill, softmax in fp32
        return torch.softmax((x.float() * 0.125).masked_fill(m, -10000.0), -1).to(dtype)

    cases = {
        "masked softmax": (lambda: scaled_masked_softmax(x, mask, 0.125, kernels="csrc"), lambda: eager(mask)),
        "causal softmax": (lambda: scaled_causal_softmax(x, 0.125, kernels="csrc"), lambda: eager(causal)),
    }
    for name, (ours, ref_fn) in cases.items():
        ref = ref_fn().detach()
        for impl, fn in (("csrc", ours), ("torch eager", ref_fn)):
            diff = (fn().detach().float() - ref.float()).abs().max().item()
            ms = time_cuda(fn, iters)
            out.append(Row(f"{name} fwd", impl, shape, ms, gbps=nbytes / ms / 1e6, max_diff=diff))
            ms = time_cuda(_fwd_bwd(fn, [x], dy), iters)
            out.append(Row(f"{name} fwd+bwd", impl, shape, ms, gbps=(nbytes + 1.5 * nbytes) / ms / 1e6))
    return out


def _attention_impls(q, k, v, causal, flash_attn_func) -> dict[str, Callable[[], torch.Tensor]]:
    from megatron_biomed.kernels.functions import flash_attention

    gqa = k.shape[2] != q.shape[2]
    impls = {
        "csrc": lambda: flash_attention(q, k, v, causal=causal, kernels="csrc"),
        "torch sdpa": lambda: F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal, enable_gqa=gqa
        ).transpose(1, 2),
    }
    if flash_attn_func is not None:
        impls["flash-attn"] = lambda: flash_attn_func(q, k, v, causal=causal)
    return impls


def bench_flash(dtype, iters, b=4, s=2048, h=16, hkv=16, d=128) -> list[Row]:
    try:
        from flash_attn import flash_attn_func
    except ImportError:
        flash_attn_func = None
    out = []
    for causal, kv_heads in ((True, hkv), (False, hkv), (True, max(1, h // 4))):
        q = torch.randn(b, s, h, d, device="cuda", dtype=dtype, requires_grad=True)
        k = torch.randn(b, s, kv_heads, d, device="cuda", dtype=dtype, requires_grad=True)
        v = torch.randn(b, s, kv_heads, d, device="cuda", dtype=dtype, requires_grad=True)
        dout = torch.randn_like(q)
        impls = _attention_impls(q, k, v, causal, flash_attn_func if dtype != torch.float32 else None)
        ref = impls["torch sdpa"]().detach()
        shape = f"b{b} s{s} h{h}/{kv_heads} d{d}{' causal' if causal else ''}"
        for impl, fn in impls.items():
            diff = (fn().detach().float() - ref.float()).abs().max().item()
            ms = time_cuda(fn, iters)
            out.append(
                Row(
                    "attention fwd",
                    impl,
                    shape,
                    ms,
                    max_diff=diff,
                    tflops=attention_flops(b, s, s, h, d, causal, False) / ms / 1e9,
                )
            )
            ms = time_cuda(_fwd_bwd(fn, [q, k, v], dout), iters)
            flops = attention_flops(b, s, s, h, d, causal, False) + attention_flops(b, s, s, h, d, causal, True)
            out.append(Row("attention fwd+bwd", impl, shape, ms, tflops=flops / ms / 1e9))
    return out


def format_table(rows: list[Row], peak: Peak | None, dtype: torch.dtype) -> str:
    head = (
        f"{'op':22s} {'impl':12s} {'shape':28s} {'ms':>9s} {'TFLOP/s':>8s} {'GB/s':>8s} {'% peak':>7s} "
        f"{'max|diff|':>10s}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        pct = ""
        if peak is not None and r.tflops is not None:
            pct = f"{100 * r.tflops / peak.tflops(dtype):.1f}"
        elif peak is not None and r.gbps is not None:
            pct = f"{100 * r.gbps / (peak.tb_per_s * 1000):.1f}"
        lines.append(
            f"{r.op:22s} {r.impl:12s} {r.shape:28s} {r.ms:9.3f} "
            f"{'' if r.tflops is None else f'{r.tflops:.1f}':>8s} {'' if r.gbps is None else f'{r.gbps:.0f}':>8s} "
            f"{pct:>7s} {'' if r.max_diff is None else f'{r.max_diff:.2e}':>10s}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", nargs="+", choices=["norm", "softmax", "flash"], default=["norm", "softmax", "flash"])
    parser.add_argument("--dtype", choices=list(DTYPES), default="bf16")
    parser.add_argument("--iters", type=int, default=20)
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        print(
            "benchmarks/kernel_speed.py: no GPU is present (torch.cuda.is_available() is False); "
            "nothing to time. Run it on a machine with a CUDA device."
        )
        return 0
    from megatron_biomed.kernels import csrc_ops

    if err := csrc_ops.load_error():
        print(f"benchmarks/kernel_speed.py: {err}", file=sys.stderr)
        return 1
    dtype = DTYPES[args.dtype]
    name = torch.cuda.get_device_name()
    peak = peak_for(name)
    print(
        f"device: {name}; peak: "
        + (
            f"{peak.tflops(dtype):.0f} TFLOP/s ({args.dtype}), {peak.tb_per_s:.2f} TB/s"
            if peak
            else "unknown (not in PEAKS)"
        )
    )
    rows: list[Row] = []
    torch.manual_seed(0)
    if "norm" in args.ops:
        rows += bench_norms(dtype, args.iters)
    if "softmax" in args.ops:
        rows += bench_softmax(dtype, args.iters)
    if "flash" in args.ops:
        rows += bench_flash(dtype, args.iters)
    print(format_table(rows, peak, dtype))
    return 0


if __name__ == "__main__":
    sys.exit(main())
