#!/usr/bin/env python
"""The GPU check: one command, under 8 minutes on one H100/H200, that says how fast and how right we are there.

    bash benchmarks/gpu_check.sh                      # results in $OUT (or runs/gpu_check)
    python benchmarks/gpu_check.py --out DIR [--backends csrc,sdpa,te,auto] [--steps a,b] [--dry-run]

Steps, in order (each in its own subprocess under its own timeout; a failed or timed-out step is recorded and
the next one runs; the whole check stops starting steps when ``--budget-s`` is spent):

* ``build`` (started first, in the background): the CUDA extension for the present GPU's arch only;
* ``env``: torch / CUDA / GPU / driver / nvcc / Transformer Engine / flash-attn / megatron-core;
* ``gemm_peak``: bf16 8192^3 matmul TFLOP/s, the peak the MFU figures are measured against;
* ``attention_baselines``: PyTorch SDPA (flash and cuDNN backends) and Transformer Engine attention,
  forward and backward TFLOP/s at the BioMedLM (20 x 128, seq 1024) and BioLLM (64 heads, 8 KV groups,
  x 128, seq 4096) shapes, causal;
* ``train_<size>_<kernels>``: a ~110M and a ~1.3B GPT (tools/pretrain.py, BioMedLM's family, bf16, mock data)
  for a few dozen steps per ``model.kernels`` choice: tokens/s, MFU and peak memory from the project's metrics
  file (training/metrics.py); an unknown or unavailable choice is recorded as skipped with the reason;
* after the build: ``kernels_vs_torch`` (our norms, softmax, flash forward + backward with GQA, ragged
  lengths and dropout against float64 references, fp32 and bf16) and ``flash_attention_csrc`` (our flash
  TFLOP/s at the same shapes), then the training runs that use our kernels.

Output: ``DIR/gpu_check.json`` (rewritten after every step; schema :data:`SCHEMA`), ``DIR/gpu_check.log`` and one
log per step under ``DIR/steps/``. Targets (flash forward >= 0.9x SDPA-flash, backward >= 0.8x, the 1.3B GPT
>= 40% MFU) are written into the JSON with pass/fail. Without CUDA (or with ``--dry-run``) the plumbing runs
and every GPU step is recorded as skipped with the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "megatron-biomed/gpu_check/1"
STATUSES = ("ok", "failed", "timeout", "skipped")
DEFAULT_BACKENDS = ("csrc", "sdpa", "te", "auto")
BUILD_BACKENDS = ("csrc", "auto")  # choices that use our kernels when built: their runs wait for the build
TEST_STEPS_ENV = "MEGATRON_BIOMED_GPU_CHECK_TEST_STEPS"  # "1" registers the test-only steps (_ok, _fail, _hang)

# Targets of issue 21 (the JSON records value, threshold and pass/fail for each).
FLASH_FWD_VS_SDPA = 0.9
FLASH_BWD_VS_SDPA = 0.8
GPT_1_3B_MFU = 0.40


class Skip(Exception):
    """A step that cannot run here, and why (recorded as ``skipped``)."""


class StepFailed(Exception):
    """A step that ran and found a failure; ``result`` still goes into the JSON."""

    def __init__(self, reason: str, result: dict):
        super().__init__(reason)
        self.result = result


# ---------------------------------------------------------------------------------------------
# steps


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    fn: Callable[[dict], dict]  # context (the JSON so far + options) -> result
    timeout_s: float
    gpu: bool = True  # needs CUDA (skipped in a dry run)
    after_build: bool = False  # waits for the background build first


ATTENTION_SHAPES = {
    # name: (batch, seqlen, heads, kv_heads, head_dim); causal
    "biomedlm": (8, 1024, 20, 20, 128),
    "biollm": (2, 4096, 64, 8, 128),
}
# GPT sizes for the training runs: BioMedLM's family (GPT-2 blocks) at ~110M (GPT-2 small) and ~1.3B.
GPT_SIZES = {
    "110m": {"num_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "seq_length": 1024, "mbs": 8,
             "iters": 30},
    "1.3b": {"num_layers": 24, "hidden_size": 2048, "num_attention_heads": 16, "seq_length": 2048, "mbs": 4,
             "iters": 20},
}  # fmt: skip
GPT_VOCAB = 28896  # BioMedLM's
# Where the kernel steps run and which kernels choice is "ours" (a CPU self-check of the step code sets
# "cpu" / "torch": the comparisons then hold PyTorch against itself).
DEVICE = "cuda"
OURS = "csrc"


def _cuda():
    import torch

    if not torch.cuda.is_available():
        raise Skip("CUDA is not available")
    return torch


def step_env(ctx: dict) -> dict:
    import importlib.metadata
    import importlib.util
    import platform

    import torch

    info: dict = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(
            gpu=p.name,
            gpu_count=torch.cuda.device_count(),
            capability=f"{p.major}.{p.minor}",
            sm_count=p.multi_processor_count,
            memory_gib=round(p.total_memory / 2**30, 1),
        )
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=False,
        )  # fmt: skip
        info["driver"] = smi.stdout.strip().split(",")[0] if smi.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        info["driver"] = None
    sys.path.insert(0, str(ROOT / "csrc"))
    import build_cuda  # csrc/build_cuda.py

    tc, why = build_cuda.find_toolchain()
    info["nvcc"] = tc.version if tc else f"absent: {why}"
    for dist, module in (("transformer-engine", "transformer_engine"), ("flash-attn", "flash_attn"),
                         ("megatron-core", "megatron.core"), ("triton", "triton")):  # fmt: skip
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        try:
            version = importlib.metadata.version(dist) if found else None
        except importlib.metadata.PackageNotFoundError:
            version = "present (no metadata)"
        info[module.replace(".", "_")] = version
    try:
        info["git_commit"] = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


def _time_cuda(fn: Callable[[], object], warmup: int = 3, iters: int = 10) -> float:
    """Median seconds of ``fn`` on the GPU (CUDA events, synchronised)."""
    import torch

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
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def step_gemm_peak(ctx: dict) -> dict:
    torch = _cuda()
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    seconds = _time_cuda(lambda: a @ b, warmup=5, iters=20)
    return {"shape": [n, n, n], "dtype": "bf16", "seconds": seconds, "tflops": 2 * n**3 / seconds / 1e12}


def _attention_flops(b: int, s: int, h: int, d: int, causal: bool) -> tuple[float, float]:
    """Forward and backward FLOPs of attention (2 matmuls forward, 5 backward; half of them when causal)."""
    fwd = 4 * b * s * s * h * d * (0.5 if causal else 1.0)
    return fwd, 2.5 * fwd


def _bench_attention(fwd: Callable, make_inputs: Callable, flops: tuple[float, float]) -> dict:
    """Forward TFLOP/s (no grad) and backward TFLOP/s (fwd+bwd minus fwd) of one attention implementation."""
    import torch

    q, k, v = make_inputs()
    with torch.no_grad():
        t_fwd = _time_cuda(lambda: fwd(q, k, v))
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    out = fwd(q, k, v)
    dout = torch.randn_like(out)

    def fwd_bwd():
        o = fwd(q, k, v)
        torch.autograd.grad(o, (q, k, v), dout)

    t_all = _time_cuda(fwd_bwd)
    t_bwd = max(t_all - t_fwd, 1e-9)
    return {"fwd_ms": t_fwd * 1e3, "bwd_ms": t_bwd * 1e3, "fwd_tflops": flops[0] / t_fwd / 1e12,
            "bwd_tflops": flops[1] / t_bwd / 1e12}  # fmt: skip


def _attention_inputs(shape: tuple, seed: int = 0):
    import torch

    b, s, h, hkv, d = shape
    g = torch.Generator(device=DEVICE).manual_seed(seed)

    def make():
        return tuple(torch.randn(b, s, n, d, device=DEVICE, dtype=torch.bfloat16, generator=g)
                     for n in (h, hkv, hkv))  # fmt: skip

    return make


def _sdpa_fn(backend_name: str, h: int, hkv: int, expand_kv: bool):
    """SDPA on our [b, s, h, d] layout (transposed views, as megatron passes them) with one backend forced."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = getattr(SDPBackend, backend_name)

    def fn(q, k, v):
        qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
        with sdpa_kernel(backend):
            if expand_kv and h != hkv:
                kt, vt = kt.repeat_interleave(h // hkv, 1), vt.repeat_interleave(h // hkv, 1)
                return F.scaled_dot_product_attention(qt, kt, vt, is_causal=True).transpose(1, 2)
            return F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=h != hkv).transpose(1, 2)

    return fn


def _te_fn(h: int, hkv: int, d: int):
    import transformer_engine.pytorch as te  # optional: only when Transformer Engine is installed

    attn = te.DotProductAttention(h, d, num_gqa_groups=hkv, attention_dropout=0.0, attn_mask_type="causal",
                                  qkv_format="bshd")  # fmt: skip
    return lambda q, k, v: attn(q, k, v)


def _run_attention(impls: dict[str, Callable[[], Callable]]) -> dict:
    """Every implementation at every shape; one that fails is recorded with its error and the rest go on."""
    out: dict = {}
    for shape_name, shape in ATTENTION_SHAPES.items():
        b, s, h, hkv, d = shape
        flops = _attention_flops(b, s, h, d, causal=True)
        row = out.setdefault(shape_name, {"shape": dict(zip(("batch", "seqlen", "heads", "kv_heads", "head_dim"),
                                                            shape), causal=True)})  # fmt: skip
        for name, factory in impls.items():
            try:
                row[name] = _bench_attention(factory(h, hkv, d), _attention_inputs(shape), flops)
            except Skip as e:
                row[name] = {"skipped": str(e)}
            except Exception as e:  # noqa: BLE001 -- recorded per implementation; the others still run
                row[name] = {"error": f"{type(e).__name__}: {str(e)[:400]}"}
    return out


def step_attention_baselines(ctx: dict) -> dict:
    _cuda()
    import importlib.util

    def sdpa(backend):
        def factory(h, hkv, d):
            fn = _sdpa_fn(backend, h, hkv, expand_kv=False)
            try:  # does this backend take GQA directly? else K/V are expanded (noted in the name)
                q, k, v = _attention_inputs((1, 128, h, hkv, d))()
                fn(q, k, v)
            except RuntimeError:
                return _sdpa_fn(backend, h, hkv, expand_kv=True)
            return fn

        return factory

    def te(h, hkv, d):
        if importlib.util.find_spec("transformer_engine") is None:
            raise Skip("transformer_engine is not importable")
        return _te_fn(h, hkv, d)

    return _run_attention({"sdpa_flash": sdpa("FLASH_ATTENTION"), "sdpa_cudnn": sdpa("CUDNN_ATTENTION"), "te": te})


def _csrc_or_skip() -> None:
    from megatron_biomed.kernels import csrc_ops

    err = csrc_ops.load_error()
    if err is not None:
        raise Skip(f"megatron_biomed._C is not loadable: {err}")


def step_flash_attention_csrc(ctx: dict) -> dict:
    _cuda()
    _csrc_or_skip()
    from megatron_biomed.kernels import functions

    def ours(h, hkv, d):
        return lambda q, k, v: functions.flash_attention(q, k, v, causal=True, kernels=OURS)

    return _run_attention({"csrc": ours})


# --- our kernels against torch --------------------------------------------------------------------------------


def _err(a, ref) -> float:
    return (a.double() - ref.double()).abs().max().item()


def _compare(name: str, dtype, fn, ref_fn, inputs: list, dout=None) -> list[dict]:
    """``fn`` (our kernel) and ``ref_fn`` in ``dtype`` against ``ref_fn`` in float64, output and gradients.

    Passes when our error is at most twice PyTorch's own error in the same precision plus a small floor
    (flash-attention's rule), so the bar follows the precision instead of a hand-picked tolerance."""
    import torch

    floor = {torch.float32: 1e-5, torch.bfloat16: 2e-3}[dtype]
    xs = [t.to(dtype).requires_grad_(t.is_floating_point()) for t in inputs]
    ts = [t.to(dtype).requires_grad_(t.is_floating_point()) for t in inputs]
    rs = [t.double().requires_grad_(t.is_floating_point()) for t in inputs]
    ys, yt, yr = fn(*xs), ref_fn(*ts), ref_fn(*rs)
    rows = [("out", ys, yt, yr)]
    if dout is not None:
        grads = [x for x in xs if x.requires_grad]
        gs = torch.autograd.grad(ys, grads, dout.to(dtype))
        gt = torch.autograd.grad(yt, [t for t in ts if t.requires_grad], dout.to(dtype))
        gr = torch.autograd.grad(yr, [t for t in rs if t.requires_grad], dout.double())
        rows += [(f"grad{i}", a, b, c) for i, (a, b, c) in enumerate(zip(gs, gt, gr))]
    results = []
    for what, ours, torch_same, ref in rows:
        e_ours, e_torch = _err(ours, ref), _err(torch_same, ref)
        tol = 2 * e_torch + floor * max(1.0, ref.abs().max().item())
        results.append({"case": name, "dtype": str(dtype).removeprefix("torch."), "tensor": what,
                        "err": e_ours, "err_torch": e_torch, "tol": tol, "passed": bool(e_ours <= tol)})  # fmt: skip
    return results


def _attention_ref(q, k, v, causal: bool, scale: float, keep=None, p: float = 0.0):
    """Reference attention on [b, s, h, d] (GQA, bottom-right causal, dropout by an explicit keep mask)."""
    import torch

    h, hkv, sq, sk = q.shape[2], k.shape[2], q.shape[1], k.shape[1]
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    kt, vt = kt.repeat_interleave(h // hkv, 1), vt.repeat_interleave(h // hkv, 1)
    s = (qt @ kt.transpose(-1, -2)).float() * scale if q.dtype != torch.float64 else (qt @ kt.transpose(-1, -2)) * scale
    if causal:
        i = torch.arange(sq, device=q.device).view(-1, 1)
        j = torch.arange(sk, device=q.device).view(1, -1)
        s = s.masked_fill(j > i + sk - sq, float("-inf"))
    prob = torch.nan_to_num(torch.softmax(s, -1), nan=0.0)
    if keep is not None:
        prob = prob * keep.to(prob.dtype) / (1 - p)
    return (prob.to(vt.dtype) @ vt).transpose(1, 2)


def _dropout_kwargs() -> tuple[dict | None, str]:
    """How functions.flash_attention takes dropout: {name of p, seed, offset} or None and why not."""
    import inspect

    from megatron_biomed.kernels import functions

    params = inspect.signature(functions.flash_attention).parameters
    if "dropout_p" not in params:
        return None, "functions.flash_attention has no dropout_p argument in this tree"
    names = {"p": "dropout_p"}
    for key, options in (("seed", ("dropout_seed", "seed")), ("offset", ("dropout_offset", "offset"))):
        names[key] = next((o for o in options if o in params), None)
    return names, ""


def step_kernels_vs_torch(ctx: dict) -> dict:
    torch = _cuda()
    _csrc_or_skip()
    import torch.nn.functional as F

    from megatron_biomed.kernels import functions

    g = torch.Generator(device=DEVICE).manual_seed(21)

    def rnd(*shape):
        return torch.randn(*shape, device=DEVICE, generator=g)

    cases: list[dict] = []
    skipped: dict[str, str] = {}
    for dtype in (torch.float32, torch.bfloat16):
        x, w, b, dy = rnd(4, 256, 2560), rnd(2560), rnd(2560), rnd(4, 256, 2560)
        cases += _compare("layer_norm 2560", dtype, lambda x, w, b: functions.layer_norm(x, w, b, 1e-5, kernels=OURS),
                          lambda x, w, b: F.layer_norm(x, (2560,), w, b, 1e-5), [x, w, b], dy)  # fmt: skip
        x, w, dy = rnd(2, 128, 8192), rnd(8192), rnd(2, 128, 8192)
        cases += _compare("rms_norm 8192", dtype, lambda x, w: functions.rms_norm(x, w, 1e-5, kernels=OURS),
                          lambda x, w: F.rms_norm(x, (8192,), w, 1e-5), [x, w], dy)  # fmt: skip
        s, dy = rnd(2, 8, 512, 512), rnd(2, 8, 512, 512)
        mask = torch.rand(2, 1, 512, 512, device=DEVICE, generator=g) < 0.2
        cases += _compare(
            "masked softmax 512", dtype, lambda s: functions.scaled_masked_softmax(s, mask, 0.5, kernels=OURS),
            lambda s: torch.softmax((s.double() * 0.5).masked_fill(mask, float("-inf")), -1).to(s.dtype), [s], dy,
        )  # fmt: skip
        causal = functions.causal_mask(512, 512, DEVICE)
        cases += _compare(
            "causal softmax 512", dtype, lambda s: functions.scaled_causal_softmax(s, 0.5, kernels=OURS),
            lambda s: torch.softmax((s.double() * 0.5).masked_fill(causal, float("-inf")), -1).to(s.dtype), [s], dy,
        )  # fmt: skip
        # flash: GQA causal at a BioLLM-like head layout, and ragged lengths (bottom-right causal and not)
        for label, (bs, sq, sk, h, hkv, d, is_causal) in {
            "flash gqa 8/2 causal": (2, 512, 512, 8, 2, 128, True),
            "flash ragged 300x457 causal": (1, 300, 457, 4, 4, 80, True),
            "flash ragged 333x200": (2, 333, 200, 6, 3, 64, False),
        }.items():
            q, k, v, do = rnd(bs, sq, h, d), rnd(bs, sk, hkv, d), rnd(bs, sk, hkv, d), rnd(bs, sq, h, d)
            scale = d**-0.5
            cases += _compare(
                label, dtype, lambda q, k, v, c=is_causal: functions.flash_attention(q, k, v, causal=c, kernels=OURS),
                lambda q, k, v, c=is_causal, sc=scale: _attention_ref(q, k, v, c, sc), [q, k, v], do,
            )  # fmt: skip
        names, why = _dropout_kwargs()
        if names is None:
            skipped[f"flash dropout {dtype}"] = why
            continue
        if names["seed"] is None or names["offset"] is None:
            skipped[f"flash dropout {dtype}"] = "functions.flash_attention takes dropout_p but no seed/offset"
            continue
        try:
            from megatron_biomed.kernels import philox
        except ImportError as e:
            skipped[f"flash dropout {dtype}"] = f"megatron_biomed.kernels.philox is not importable: {e}"
            continue
        bs, sq, sk, h, hkv, d, p, seed, offset = 2, 256, 384, 4, 2, 64, 0.1, 1234567, 7
        q, k, v, do = rnd(bs, sq, h, d), rnd(bs, sk, hkv, d), rnd(bs, sk, hkv, d), rnd(bs, sq, h, d)
        kw = {names["p"]: p, names["seed"]: seed, names["offset"]: offset}
        keep = philox.dropout_keep_mask(seed, offset, p, bs, h, sq, sk, DEVICE)

        def ours(q, k, v, kw=kw):
            return functions.flash_attention(q, k, v, causal=True, kernels=OURS, **kw)

        cases += _compare("flash dropout 0.1 causal", dtype, ours,
                          lambda q, k, v: _attention_ref(q, k, v, True, d**-0.5, keep, p), [q, k, v], do)  # fmt: skip
        with torch.no_grad():
            a, b2 = ours(q.to(dtype), k.to(dtype), v.to(dtype)), ours(q.to(dtype), k.to(dtype), v.to(dtype))
            kw2 = {**kw, names["offset"]: offset + 1}
            c = functions.flash_attention(q.to(dtype), k.to(dtype), v.to(dtype), causal=True, kernels=OURS, **kw2)
        tag = {"dtype": str(dtype).removeprefix("torch."), "tensor": "out"}
        cases.append(
            {"case": "flash dropout reproducible (same seed/offset)", **tag, "passed": bool(torch.equal(a, b2))}
        )
        cases.append({"case": "flash dropout differs (offset + 1)", **tag, "passed": not bool(torch.equal(a, c))})
    result = {"cases": cases, "skipped": skipped, "passed": sum(c["passed"] for c in cases), "total": len(cases)}
    bad = [f"{c['case']} {c['dtype']} {c['tensor']}" for c in cases if not c["passed"]]
    if bad:
        raise StepFailed(f"{len(bad)} of {len(cases)} comparisons failed: {', '.join(bad[:8])}", result)
    return result


# --- training runs ------------------------------------------------------------------------------------------


def train_argv(size: str, kernels: str, out_dir: Path, peak_tflops: float | None, iters: int | None = None) -> list:
    """tools/pretrain.py's command line for one training run (BioMedLM's family at ``size``, bf16, mock data)."""
    sz = GPT_SIZES[size]
    sets = {
        "model.num_layers": sz["num_layers"],
        "model.hidden_size": sz["hidden_size"],
        "model.num_attention_heads": sz["num_attention_heads"],
        "model.seq_length": sz["seq_length"],
        "model.vocab_size": GPT_VOCAB,
        "model.kernels": kernels,
        "train.micro_batch_size": sz["mbs"],
        "train.global_batch_size": sz["mbs"],
        "train.train_iters": iters or sz["iters"],
        "train.eval_interval": 0,
        "train.eval_iters": 0,
        "train.precision": "bf16",
        "optimizer.lr_warmup_iters": 2,
        "data.mock": "true",
        "logging.log_interval": 5,
        "logging.metrics_file": str(out_dir / "metrics.jsonl"),
    }
    if peak_tflops:
        sets["logging.peak_flops_per_rank"] = f"{peak_tflops * 1e12:.6g}"
    argv = [sys.executable, str(ROOT / "tools" / "pretrain.py"), "--preset", "biomedlm-2.7b"]
    for k, v in sets.items():
        argv += ["--set", f"{k}={v}"]
    return argv


def summarize_metrics(lines: list[dict], warmup: int) -> dict:
    """Median tokens/s, step time, MFU of the steps after ``warmup`` (the project's metrics file), and the peak
    memory when the loop reports it (any key naming memory)."""
    train = [r for r in lines if r.get("kind") == "train"]
    steady = [r for r in train if r.get("iteration", 0) > warmup] or train
    if not steady:
        raise RuntimeError("the metrics file has no training steps")

    def med(key):
        vals = [r[key] for r in steady if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        return statistics.median(vals) if vals else None

    memory = {k: max(r[k] for r in train if isinstance(r.get(k), (int, float)))
              for k in sorted({k for r in train for k in r if "mem" in k})}  # fmt: skip
    return {
        "steps": len(train),
        "steps_measured": len(steady),
        "tokens_per_s": med("tokens_per_s"),
        "step_time_s": med("step_time_s"),
        "tflops_per_rank": med("tflops_per_rank"),
        "mfu": med("mfu"),
        "memory": memory,
        "final_loss": train[-1].get("loss"),
    }


def _poll_gpu_memory(stop: threading.Event, peak: list) -> None:
    """Largest ``nvidia-smi`` memory.used (MiB) while a run goes on: the peak when the metrics lack it."""
    while not stop.wait(0.5):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5, check=False).stdout  # fmt: skip
            peak[0] = max(peak[0], int(out.split()[0]))
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass


def make_train_step(size: str, kernels: str) -> Callable[[dict], dict]:
    def step(ctx: dict) -> dict:
        from megatron_biomed.kernels.registry import KERNEL_PROVIDERS, provider_class

        if kernels not in KERNEL_PROVIDERS:
            raise Skip(f"unknown choice: model.kernels={kernels!r} is not one of {KERNEL_PROVIDERS.names()}")
        _cuda()
        why = provider_class(kernels).unavailable_reason()
        if why:
            raise Skip(f"model.kernels={kernels} cannot run here: {why}")
        peak = (ctx.get("results", {}).get("gemm_peak") or {}).get("tflops")
        run_dir = Path(ctx["step_dir"])
        argv = train_argv(size, kernels, run_dir, peak)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        stop, mem = threading.Event(), [0]
        poller = threading.Thread(target=_poll_gpu_memory, args=(stop, mem), daemon=True)
        poller.start()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - t0
        stop.set()
        (run_dir / "pretrain.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise RuntimeError(f"tools/pretrain.py exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}")
        lines = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
        result = summarize_metrics(lines, warmup=max(3, GPT_SIZES[size]["iters"] // 4))
        if result["mfu"] is None and peak and result["tflops_per_rank"]:
            result["mfu"] = result["tflops_per_rank"] / peak
        sz = GPT_SIZES[size]
        result.update(size=size, kernels=kernels, seconds=seconds, peak_tflops=peak,
                      peak_memory_gib_nvidia_smi=round(mem[0] / 1024, 2) if mem[0] else None,
                      config={k: v for k, v in sz.items()}, command=" ".join(argv[1:]))  # fmt: skip
        return result

    return step


# --- the background build ----------------------------------------------------------------------------------


def build_env(capability: str) -> dict:
    """Environment of ``setup.py build_ext --inplace`` for one arch only (TORCH_CUDA_ARCH_LIST = capability)."""
    return {
        **os.environ,
        "MEGATRON_BIOMED_BUILD_CUDA": "1",
        "TORCH_CUDA_ARCH_LIST": capability,
        # leave two cores to the steps that run meanwhile
        "MAX_JOBS": os.environ.get("MAX_JOBS") or str(max(1, (os.cpu_count() or 4) - 2)),
    }


BUILD_COMMAND = [sys.executable, "setup.py", "build_ext", "--inplace"]


# --- test-only steps (registered with MEGATRON_BIOMED_GPU_CHECK_TEST_STEPS=1) -------------------------------


def _test_ok(ctx: dict) -> dict:
    return {"value": 42, "saw_steps": sorted(ctx.get("results", {}))}


def _test_fail(ctx: dict) -> dict:
    raise RuntimeError("injected failure")


def _test_hang(ctx: dict) -> dict:
    time.sleep(3600)
    return {}


# ---------------------------------------------------------------------------------------------
# the plan


def plan(backends: list[str]) -> list[Step]:
    """The steps in the order they run (the build runs in the background from the start)."""
    steps = [
        Step("env", step_env, 90, gpu=False),
        Step("gemm_peak", step_gemm_peak, 90),
        Step("attention_baselines", step_attention_baselines, 150),
    ]
    no_build = [k for k in backends if k not in BUILD_BACKENDS]
    with_build = [k for k in backends if k in BUILD_BACKENDS]
    # Runs that do not use our kernels go while the build compiles; the 1.3B target first.
    for size in ("1.3b", "110m"):
        steps += [Step(f"train_{size}_{k}", make_train_step(size, k), 150 if size == "1.3b" else 100) for k in no_build]
    steps += [
        Step("kernels_vs_torch", step_kernels_vs_torch, 120, after_build=True),
        Step("flash_attention_csrc", step_flash_attention_csrc, 120, after_build=True),
    ]
    for size in ("1.3b", "110m"):
        steps += [Step(f"train_{size}_{k}", make_train_step(size, k), 150 if size == "1.3b" else 100,
                       after_build=True) for k in with_build]  # fmt: skip
    return steps


def selftest_steps() -> list[Step]:
    return [
        Step("_ok", _test_ok, 30, gpu=False),
        Step("_fail", _test_fail, 30, gpu=False),
        Step("_hang", _test_hang, 2, gpu=False),
        Step("_gpu", _test_ok, 30, gpu=True),
        Step("_after_build", _test_ok, 30, gpu=False, after_build=True),
    ]


def all_steps(backends: list[str]) -> dict[str, Step]:
    steps = plan(backends)
    if os.environ.get(TEST_STEPS_ENV) == "1":
        steps += selftest_steps()
    return {s.name: s for s in steps}


# ---------------------------------------------------------------------------------------------
# targets


def evaluate_targets(results: dict) -> list[dict]:
    """Issue 21's targets against what was measured; ``passed`` is None when a figure is missing."""
    targets = []
    ours = results.get("flash_attention_csrc") or {}
    base = results.get("attention_baselines") or {}
    for shape in ATTENTION_SHAPES:
        for direction, threshold in (("fwd", FLASH_FWD_VS_SDPA), ("bwd", FLASH_BWD_VS_SDPA)):
            a = (ours.get(shape) or {}).get("csrc", {}).get(f"{direction}_tflops")
            b = (base.get(shape) or {}).get("sdpa_flash", {}).get(f"{direction}_tflops")
            value = a / b if a and b else None
            targets.append({
                "name": f"flash {direction} {shape} vs SDPA-flash",
                "metric": f"csrc {direction} TFLOP/s / sdpa_flash {direction} TFLOP/s",
                "value": value, "threshold": threshold,
                "passed": None if value is None else value >= threshold,
                "detail": None if value is not None else "missing: csrc or sdpa_flash figure not measured",
            })  # fmt: skip
    runs = {k: v for k, v in results.items() if k.startswith("train_1.3b_") and v and v.get("mfu") is not None}
    best = max(runs, key=lambda k: runs[k]["mfu"], default=None)
    value = runs[best]["mfu"] if best else None
    targets.append({
        "name": "1.3B GPT MFU", "metric": "best model.kernels choice: model TFLOP/s / measured bf16 GEMM peak",
        "value": value, "threshold": GPT_1_3B_MFU, "passed": None if value is None else value >= GPT_1_3B_MFU,
        "detail": best.removeprefix("train_1.3b_") if best else "missing: no 1.3B run measured",
        "per_kernels": {k.removeprefix("train_1.3b_"): v["mfu"] for k, v in runs.items()},
    })  # fmt: skip
    return targets


# ---------------------------------------------------------------------------------------------
# the driver (parent process)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class Report:
    """The JSON and the log, rewritten / appended as each step ends."""

    def __init__(self, out: Path, meta: dict):
        self.out = out
        self.json_path, self.log_path = out / "gpu_check.json", out / "gpu_check.log"
        self.data = {"schema": SCHEMA, "started": _now(), "finished": None, "host": socket.gethostname(), **meta,
                     "steps": [], "results": {}, "targets": []}  # fmt: skip
        self.log_path.write_text("")
        self.save()

    def log(self, msg: str) -> None:
        line = f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        with self.log_path.open("a") as f:
            f.write(line + "\n")

    def record(self, name: str, status: str, seconds: float, timeout_s: float | None, reason: str | None,
               result: dict | None, log: str | None) -> None:  # fmt: skip
        assert status in STATUSES
        self.data["steps"].append({"name": name, "status": status, "seconds": round(seconds, 2),
                                   "timeout_s": timeout_s, "reason": reason, "log": log})  # fmt: skip
        self.data["results"][name] = result
        self.log(f"{name}: {status} in {seconds:.1f} s" + (f" ({reason.splitlines()[0][:300]})" if reason else ""))
        self.save()

    def save(self) -> None:
        tmp = self.json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.json_path)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _run_worker(step: Step, out: Path, timeout_s: float, backends: list[str]) -> tuple[str, str | None, dict | None]:
    """Run one step in its own process group under ``timeout_s``: (status, reason, result)."""
    step_dir = out / "steps" / step.name
    step_dir.mkdir(parents=True, exist_ok=True)
    result_path = step_dir / "result.json"
    result_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", step.name, "--out", str(out),
           "--backends", ",".join(backends)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with (step_dir / "step.log").open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            return "timeout", f"killed after {timeout_s:.0f} s (its timeout)", None
    if not result_path.exists():
        tail = (step_dir / "step.log").read_text()[-2000:]
        return "failed", f"the step's process exited {proc.returncode} without a result:\n{tail}", None
    rec = json.loads(result_path.read_text())
    return rec["status"], rec.get("reason"), rec.get("result")


def _worker(name: str, out: Path, backends: list[str]) -> int:
    """Inside the step's process: run it and write ``steps/<name>/result.json``."""
    step = all_steps(backends)[name]
    step_dir = out / "steps" / name
    ctx = json.loads((out / "gpu_check.json").read_text())
    ctx["step_dir"] = str(step_dir)
    status, reason, result = "ok", None, None
    try:
        result = step.fn(ctx)
    except Skip as e:
        status, reason = "skipped", str(e)
    except StepFailed as e:
        status, reason, result = "failed", str(e), e.result
    except Exception as e:  # noqa: BLE001 -- any error of a step is its result; the check goes on
        import traceback

        traceback.print_exc()
        status, reason = "failed", f"{type(e).__name__}: {e}"
    (step_dir / "result.json").write_text(json.dumps({"status": status, "reason": reason, "result": result},
                                                     default=str))  # fmt: skip
    return 0


def _probe_cuda() -> tuple[bool, str, str]:
    """Whether CUDA is usable (else why not) and the device's capability ("9.0"), asked in a subprocess: a
    broken driver must not take the check down, and the driver itself never imports torch."""
    code = (
        "import torch; ok = torch.cuda.is_available(); "
        "cap = '%d.%d' % torch.cuda.get_device_capability(0) if ok else '-'; "
        "print(ok, torch.__version__, torch.version.cuda, cap)"
    )
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        return False, "importing torch took over 120 s", ""
    if proc.returncode != 0:
        return False, f"torch is not importable: {proc.stderr.strip().splitlines()[-1:]}", ""
    ok, version, cuda, capability = proc.stdout.split()[-4:]
    if ok != "True":
        return False, f"no CUDA device (torch {version}, CUDA build {cuda})", ""
    return True, "", capability


def run_check(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    backends = [b for b in args.backends.split(",") if b]
    steps = all_steps(backends)
    selected = [s.strip() for s in (args.steps or "").split(",") if s.strip()]
    unknown = [s for s in selected if s not in steps and s != "build"]
    if unknown:
        raise SystemExit(f"--steps: unknown step(s) {unknown}; known: {['build', *steps]}")
    order = [steps[s] for s in selected if s != "build"] if selected else [s for s in steps.values()
                                                                           if not s.name.startswith("_")]  # fmt: skip
    want_build = (not selected or "build" in selected) and not args.no_build
    cuda_ok, why, capability = (False, "--dry-run", "") if args.dry_run else _probe_cuda()
    dry_reason = None if cuda_ok else f"dry run: {why}"
    overrides = dict(kv.split("=", 1) for kv in args.timeout)
    report = Report(out, {"dry_run": not cuda_ok, "dry_run_reason": dry_reason, "budget_s": args.budget_s,
                          "backends": backends, "argv": sys.argv[1:]})  # fmt: skip
    t_start = time.perf_counter()
    report.log(f"results in {report.json_path}; {len(order)} steps; budget {args.budget_s:.0f} s"
               + (f"; {dry_reason}" if dry_reason else ""))  # fmt: skip

    build = None  # (Popen, t0, log path)
    build_timeout = float(overrides.get("build", args.build_timeout_s))
    if want_build and not cuda_ok:
        report.record("build", "skipped", 0.0, build_timeout, dry_reason, None, None)
    elif want_build:
        cmd, env = BUILD_COMMAND, build_env(capability)
        log_path = out / "steps" / "build.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("w")
        report.log(f"build: started in the background (TORCH_CUDA_ARCH_LIST={env.get('TORCH_CUDA_ARCH_LIST')})")
        build = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                  start_new_session=True), time.perf_counter(), log_path)  # fmt: skip

    def finish_build(wait: bool) -> None:
        nonlocal build
        if build is None:
            return
        proc, t0, log_path = build
        left = build_timeout - (time.perf_counter() - t0)
        try:
            proc.wait(timeout=max(left, 0) if wait else 0)
        except subprocess.TimeoutExpired:
            if not wait:
                return
            _kill(proc)
            report.record("build", "timeout", time.perf_counter() - t0, build_timeout,
                          f"killed after {build_timeout:.0f} s", None, str(log_path))  # fmt: skip
            build = None
            return
        ok = proc.returncode == 0
        tail = log_path.read_text()[-2000:]
        report.record("build", "ok" if ok else "failed", time.perf_counter() - t0, build_timeout,
                      None if ok else f"setup.py build_ext exited {proc.returncode}:\n{tail}",
                      {"log_tail": tail[-600:]}, str(log_path))  # fmt: skip
        build = None

    for step in order:
        finish_build(wait=False)  # record it as soon as it is done
        if step.gpu and not cuda_ok:
            report.record(step.name, "skipped", 0.0, step.timeout_s, dry_reason, None, None)
            continue
        if step.after_build:
            finish_build(wait=True)
        left = args.budget_s - (time.perf_counter() - t_start)
        if left < 10:
            report.record(step.name, "skipped", 0.0, step.timeout_s,
                          f"out of the check's time budget (--budget-s {args.budget_s:.0f})", None, None)  # fmt: skip
            continue
        timeout_s = min(float(overrides.get(step.name, step.timeout_s)), left)
        report.log(f"{step.name}: running (timeout {timeout_s:.0f} s)")
        t0 = time.perf_counter()
        status, reason, result = _run_worker(step, out, timeout_s, backends)
        report.record(step.name, status, time.perf_counter() - t0, timeout_s, reason, result,
                      str(out / "steps" / step.name / "step.log"))  # fmt: skip
    finish_build(wait=True)
    report.data["targets"] = evaluate_targets(report.data["results"])
    report.data["finished"] = _now()
    report.data["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    report.save()
    report.log(format_summary(report.data))
    return 1 if any(s["status"] in ("failed", "timeout") for s in report.data["steps"]) else 0


def format_summary(data: dict) -> str:
    lines = ["summary:", f"{'step':34s} {'status':8s} {'seconds':>8s}  note"]
    for s in data["steps"]:
        note = (s["reason"] or "").splitlines()[0][:90] if s["reason"] else ""
        lines.append(f"{s['name']:34s} {s['status']:8s} {s['seconds']:8.1f}  {note}")
    for shape in ATTENTION_SHAPES:
        row = {**((data["results"].get("attention_baselines") or {}).get(shape) or {}),
               **((data["results"].get("flash_attention_csrc") or {}).get(shape) or {})}  # fmt: skip
        for impl in ("csrc", "sdpa_flash", "sdpa_cudnn", "te"):
            r = row.get(impl)
            if r and "fwd_tflops" in r:
                lines.append(f"attention {shape:9s} {impl:10s} fwd {r['fwd_tflops']:7.1f} TFLOP/s  "
                             f"bwd {r['bwd_tflops']:7.1f} TFLOP/s")  # fmt: skip
    for name, r in data["results"].items():
        if name.startswith("train_") and r:
            mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "n/a"
            mem = r.get("peak_memory_gib_nvidia_smi")
            lines.append(f"{name:24s} tokens/s {r['tokens_per_s'] or 0:10.0f}  MFU {mfu:>6s}  peak mem {mem} GiB")
    for t in data["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[t["passed"]]
        value = "n/a" if t["value"] is None else f"{t['value']:.3f}"
        lines.append(f"target {t['name']:42s} {value:>7s} >= {t['threshold']:<5} {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "runs" / "gpu_check"),
                    help="results folder (default $OUT, else runs/gpu_check)")  # fmt: skip
    ap.add_argument("--backends", default=",".join(DEFAULT_BACKENDS),
                    help="model.kernels choices of the training runs (comma list; unknown: skipped)")  # fmt: skip
    ap.add_argument("--steps", default=None, help="only these steps, in this order (comma list; 'build' included)")
    ap.add_argument("--dry-run", action="store_true", help="run the plumbing only: every GPU step is skipped")
    ap.add_argument("--no-build", action="store_true", help="do not build the CUDA extension (use the installed one)")
    ap.add_argument("--budget-s", type=float, default=450.0, help="start no step after this many seconds")
    ap.add_argument("--build-timeout-s", type=float, default=330.0)
    ap.add_argument("--timeout", action="append", default=[], metavar="STEP=SECONDS", help="override a step's timeout")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for kv in args.timeout:
        if "=" not in kv:
            ap.error(f"--timeout {kv!r}: expected STEP=SECONDS")
    if args.worker:
        return _worker(args.worker, Path(args.out).resolve(), [b for b in args.backends.split(",") if b])
    return run_check(args)


if __name__ == "__main__":
    sys.exit(main())
