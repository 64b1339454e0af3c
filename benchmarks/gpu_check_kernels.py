"""The GPU check's kernel steps: environment, bf16 GEMM peak, attention TFLOP/s (ours, SDPA flash/cuDNN,
Transformer Engine) and our kernels against float64 references. Run by benchmarks/gpu_check.py, each in its own
process."""

from __future__ import annotations

import subprocess
import sys
from typing import Callable

from gpu_check_common import ROOT, Skip, StepFailed

ATTENTION_SHAPES = {
    # name: (batch, seqlen, heads, kv_heads, head_dim); causal
    "biomedlm": (8, 1024, 20, 20, 128),
    "biollm": (2, 4096, 64, 8, 128),
}
# GPT sizes for the training runs: BioMedLM's family (GPT-2 blocks) at ~110M (GPT-2 small) and ~1.3B.
# Where the kernel steps run and which kernels choice is "ours" (a CPU self-check of the step code sets
# "cpu" / "torch": the comparisons then hold PyTorch against itself).
DEVICE = "cuda"
OURS = "csrc"


def require_cuda():
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
    """Median seconds of ``fn`` on the GPU: benchmarks/kernel_speed.py's CUDA-event timer (which imports torch,
    so it is imported here, in the GPU steps' worker process, not by the runner)."""
    from kernel_speed import time_cuda

    return time_cuda(fn, iters=iters, warmup=warmup) / 1e3


def step_gemm_peak(ctx: dict) -> dict:
    torch = require_cuda()
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
    require_cuda()
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
    require_cuda()
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
    torch = require_cuda()
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
