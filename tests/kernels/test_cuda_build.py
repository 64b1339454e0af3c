"""nvcc checks of the csrc CUDA code and of the built ``megatron_biomed._C``.

* Every ``.cu`` under csrc compiles with nvcc for sm_80 and sm_90 with ``-Xptxas -v``; the register /
  shared memory / spill report goes to ``build/ptxas_report.txt`` and the hot kernels must not spill.
  Objects are cached by content under ``build/cuda_objects`` (see csrc/build_cuda.py), so after
  ``pip install`` built the extension this test reuses its compilation instead of repeating it.
* The built extension imports without a GPU and its ops resolve as ``torch.ops.megatron_biomed.*``
  (their fake implementations are tested in test_kernels_python.py).
* The same bindings compiled against the CPU emulator (``torch.ops.megatron_biomed_emu``, needs only
  g++) compute every op correctly (float64 references) and reject bad arguments.

Skipped only where nvcc (or a CUDA build of torch, for the extension) is absent.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "csrc"))
import build_cuda  # noqa: E402  (csrc/build_cuda.py)

TOOLCHAIN, NO_TOOLCHAIN = build_cuda.find_toolchain()
needs_nvcc = pytest.mark.skipif(TOOLCHAIN is None, reason=f"no CUDA toolchain: {NO_TOOLCHAIN}")
ARCHS = build_cuda.DEFAULT_ARCHS.split(";")  # the same flags as the default build: shared cache

# Kernels on the training hot path: none of them may spill registers to local memory.
HOT_KERNELS = re.compile(r"layer_norm|rms_norm|softmax|flash_(fwd|bwd)")
# Kernel families that must be present in the report, by the .cu file that instantiates them.
EXPECTED = {
    "flash_attention_fwd.cu": ["flash_fwd_kernel"],
    "flash_attention_bwd.cu": ["flash_bwd_delta_kernel", "flash_bwd_dkdv_kernel", "flash_bwd_dq_kernel"],
    "layer_norm.cu": ["layer_norm_fwd_kernel", "layer_norm_bwd_dx_kernel", "layer_norm_bwd_params_kernel"],
    "softmax.cu": ["scaled_softmax_fwd_kernel", "scaled_softmax_bwd_kernel"],
}


@pytest.fixture(scope="module")
def compiled():
    sources = sorted((ROOT / "csrc").rglob("*.cu"))
    assert sources, "no .cu files under csrc"
    results = build_cuda.compile_all(TOOLCHAIN, ROOT, sources, jobs=int(os.environ.get("MAX_JOBS", "2")), archs=ARCHS)
    report = ROOT / "build" / "ptxas_report.txt"
    report.parent.mkdir(exist_ok=True)
    report.write_text(build_cuda.format_report(results, ROOT))
    return results


@needs_nvcc
def test_every_cu_compiles_for_sm80_and_sm90(compiled):
    for r in compiled:
        assert r.obj.exists() and r.obj.stat().st_size > 0, r.source
        kernels = build_cuda.parse_ptxas(r.ptxas)
        if not kernels:  # a .cu with host code only has nothing for ptxas to report
            continue
        archs = {k.arch for k in kernels}
        assert {"sm_80", "sm_90"} <= archs, f"{r.source.name}: ptxas reported only {archs}"
        names80 = {k.mangled for k in kernels if k.arch == "sm_80"}
        names90 = {k.mangled for k in kernels if k.arch == "sm_90"}
        assert names80 == names90, f"{r.source.name}: different kernels for sm_80 and sm_90"


@needs_nvcc
def test_expected_kernels_are_instantiated(compiled):
    by_file = {r.source.name: build_cuda.parse_ptxas(r.ptxas) for r in compiled}
    for file, families in EXPECTED.items():
        if not (ROOT / "csrc" / "cuda" / file).exists():
            continue  # family not bound yet
        names = " ".join(k.name for k in by_file[file])
        for family in families:
            assert family in names, f"{file}: no {family} kernel in the ptxas report"


@needs_nvcc
def test_hot_kernels_do_not_spill(compiled):
    hot = [k for r in compiled for k in build_cuda.parse_ptxas(r.ptxas) if HOT_KERNELS.search(k.name)]
    assert hot, "no hot kernels found in the ptxas report"
    bad = [
        f"{k.arch} {build_cuda.short_name(k.name)}: {k.spill_stores} B spill stores, "
        f"{k.spill_loads} B spill loads, {k.registers} registers"
        for k in hot
        if k.spill_stores or k.spill_loads
    ]
    assert not bad, "register spills in hot kernels (see build/ptxas_report.txt):\n" + "\n".join(bad)
    # not vacuous: every family was seen, on both architectures
    families = ("layer_norm", "softmax", "flash_")
    seen = {(f, k.arch) for k in hot for f in families if f in k.name}
    assert {(f, a) for f in families for a in ("sm_80", "sm_90")} <= seen
    assert (ROOT / "build" / "ptxas_report.txt").read_text().count("regs=") == sum(
        len(build_cuda.parse_ptxas(r.ptxas)) for r in compiled
    )


def test_parse_ptxas_reads_spills_and_registers():
    # The format nvcc 13 prints; the parser must see spills, or the check above would be vacuous.
    text = (
        "ptxas info    : 0 bytes gmem\n"
        "ptxas info    : Compiling entry function '_ZN3mbk7softmax6kernelIfEEvPKfPfi' for 'sm_90'\n"
        "ptxas info    : Function properties for _ZN3mbk7softmax6kernelIfEEvPKfPfi\n"
        "    24 bytes stack frame, 16 bytes spill stores, 8 bytes spill loads\n"
        "ptxas info    : Used 255 registers, used 1 barriers, 4096 bytes smem, 380 bytes cmem[0]\n"
        "ptxas info    : Compiling entry function '_Z1kv' for 'sm_80'\n"
        "ptxas info    : Function properties for _Z1kv\n"
        "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
        "ptxas info    : Used 8 registers, 352 bytes cmem[0]\n"
    )
    k1, k2 = build_cuda.parse_ptxas(text)
    assert (k1.arch, k1.registers, k1.stack_bytes, k1.spill_stores, k1.spill_loads, k1.shared_bytes) == (
        "sm_90",
        255,
        24,
        16,
        8,
        4096,
    )
    assert (k2.arch, k2.registers, k2.spill_stores, k2.shared_bytes) == ("sm_80", 8, 0, 0)
    if build_cuda.shutil.which("c++filt"):
        assert build_cuda.short_name(k1.name) == "mbk::softmax::kernel<float>"


def test_gencode_flags_are_explicit(monkeypatch):
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    assert build_cuda.gencode_flags() == [
        "-gencode=arch=compute_80,code=sm_80",
        "-gencode=arch=compute_90,code=sm_90",
        "-gencode=arch=compute_90,code=compute_90",
    ]
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.6 9.0a")
    assert build_cuda.gencode_flags() == [
        "-gencode=arch=compute_86,code=sm_86",
        "-gencode=arch=compute_90a,code=sm_90a",
    ]
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "sm_90")
    with pytest.raises(ValueError, match="sm_90"):
        build_cuda.gencode_flags()


def test_build_switch_off_skips_with_reason(monkeypatch, capsys):
    monkeypatch.setenv(build_cuda.ENV_SWITCH, "0")
    assert build_cuda.cuda_extensions(ROOT) == []
    assert f"{build_cuda.ENV_SWITCH}=0" in capsys.readouterr().err


def test_build_without_nvcc_skips_or_fails_when_forced(monkeypatch, capsys):
    monkeypatch.setattr(build_cuda, "find_toolchain", lambda: (None, "nvcc was not found on PATH"))
    monkeypatch.delenv(build_cuda.ENV_SWITCH, raising=False)
    if build_cuda.build_decision()[1].endswith("is not a CUDA build"):
        pytest.skip("torch is a CPU build: the toolchain is not consulted")
    assert build_cuda.cuda_extensions(ROOT) == []
    assert "nvcc was not found" in capsys.readouterr().err
    monkeypatch.setenv(build_cuda.ENV_SWITCH, "1")
    with pytest.raises(RuntimeError, match="=1 but the CUDA extension cannot be built: nvcc was not found"):
        build_cuda.cuda_extensions(ROOT)


@needs_nvcc
def test_toolchain_is_the_real_toolkit():
    # The first of the three fixes: CUDA_HOME must hold the CUDA headers, not the wrapper's folder.
    assert (Path(TOOLCHAIN.cuda_home) / "include" / "cuda_runtime.h").exists()
    assert Path(TOOLCHAIN.nvcc).parent == Path(TOOLCHAIN.cuda_home) / "bin"


# ---------------------------------------------------------------------------------------------
# SASS evidence (cuobjdump): the tensor-core flash kernels really run HMMA, without spills

CUOBJDUMP = build_cuda.find_cuobjdump()
needs_cuobjdump = pytest.mark.skipif(
    CUOBJDUMP is None, reason="cuobjdump not found (pip install nvidia-cuda-cuobjdump, requirements-test.txt)"
)

# A stand-in written against mbk/tensor_core.cuh, so the evidence check is proven on a kernel we know: one
# kernel that issues mma.sync (must pass) and one named like a tensor-core kernel that computes in scalar FMA
# (must be caught).
STANDIN = """#include "mbk/tensor_core.cuh"
namespace mbk { namespace sass_standin {
template <typename T>
__global__ void __launch_bounds__(64) flash_fwd_standin_mma_kernel(const uint32_t* a, const uint32_t* b, float* d) {
  __shared__ uint32_t tile[64 * 4];
  const int t = threadIdx.x;
  for (int i = 0; i < 4; ++i) tile[t * 4 + i] = a[t * 4 + i];
  __syncthreads();
  const uint32_t ra[4] = {tile[t * 4], tile[t * 4 + 1], tile[t * 4 + 2], tile[t * 4 + 3]};
  const uint32_t rb[2] = {b[t * 2], b[t * 2 + 1]};
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  mbk::mma_m16n8k16<T>(acc, ra, rb, acc);
  for (int i = 0; i < 4; ++i) d[t * 4 + i] = acc[i];
}
template <typename T>
__global__ void flash_bwd_scalar_mma_kernel(const float* a, float* d) {
  d[threadIdx.x] = a[threadIdx.x] * a[threadIdx.x + 1] + 1.f;
}
#define MBK_STANDIN(T) \\
  template __global__ void flash_fwd_standin_mma_kernel<T>(const uint32_t*, const uint32_t*, float*); \\
  template __global__ void flash_bwd_scalar_mma_kernel<T>(const float*, float*);
MBK_STANDIN(__half)
MBK_STANDIN(__nv_bfloat16)
}}  // namespace mbk::sass_standin
"""


def _sass_of(sources):
    results = build_cuda.compile_all(TOOLCHAIN, ROOT, sources, jobs=int(os.environ.get("MAX_JOBS", "2")), archs=ARCHS)
    facts = [f for r in results for f in build_cuda.sass_facts(r.obj, CUOBJDUMP)]
    return facts, [k for r in results for k in build_cuda.parse_ptxas(r.ptxas)]


@needs_nvcc
@needs_cuobjdump
def test_sass_evidence_on_a_standin_kernel():
    src = ROOT / "build" / "sass_standin" / "flash_standin_mma.cu"  # fixed path and content: cached compile
    src.parent.mkdir(parents=True, exist_ok=True)
    if not src.exists() or src.read_text() != STANDIN:
        src.write_text(STANDIN)
    facts, ptxas = _sass_of([src])
    good = [f for f in facts if "standin_mma" in f.name]
    bad = [f for f in facts if "scalar_mma" in f.name]
    assert {(f.arch, t) for f in good for t in build_cuda.MMA_DTYPES if t in f.name} >= {
        (a, t) for a in build_cuda.MMA_ARCHS for t in build_cuda.MMA_DTYPES
    }
    assert all(f.hmma == 1 and f.local_bytes == 0 and f.max_threads == 64 and f.shared_bytes >= 1024 for f in good)
    assert build_cuda.mma_kernel_problems(good, ptxas) == []
    # the scalar impostor is caught, for each type and arch; no mma kernel at all is a failure too
    problems = build_cuda.mma_kernel_problems(bad, ptxas)
    assert sum("flash_bwd_scalar_mma_kernel" in p and "no HMMA" in p for p in problems) == len(bad) == 4
    assert len(build_cuda.mma_kernel_problems([])) == 4
    # the backward's delta kernel (a row reduction, no matrix product) needs no HMMA, but no spills either
    delta = [
        dataclasses.replace(f, name=f.name.replace("standin", "delta").replace("fwd", "bwd"), hmma=0) for f in good
    ]
    assert build_cuda.mma_kernel_problems([*good, *delta]) == []
    assert build_cuda.mma_kernel_problems([*good, dataclasses.replace(delta[0], local_bytes=4)]) != []
    spilled = dataclasses.replace(good[0], local_bytes=8)
    assert any("8 bytes of local memory" in p for p in build_cuda.mma_kernel_problems([spilled, *good[1:]]))
    report = build_cuda.format_sass_report(facts)
    assert report.count("flash_fwd_standin_mma_kernel") == 4 and "sm_90" in report
    # 64 threads, 2 KB static smem: warps limit (32 blocks); with 100 KB dynamic, shared memory limits (1 on sm_80)
    row = next(ln for ln in build_cuda.format_sass_report(good, dynamic_shared={"standin": 100 << 10}).splitlines()
               if "sm_80" in ln and "__half" in ln)  # fmt: skip
    assert row.split()[7:10] == ["1", "3%", "shared"], row


def test_occupancy_follows_the_limits():
    # 128 threads (4 warps), 64 registers: 65536 / (64 * 32) = 32 warps = 8 blocks; 48 KB (+1 KB reserved)
    # static smem: 167936 // 50176 = 3 blocks (sm_80); sm_90 (cuobjdump counts the reserve): 233472 // 50176 = 4.
    assert build_cuda.occupancy("sm_80", 64, 0, 128) == (0.5, 8, "registers")
    assert build_cuda.occupancy("sm_80", 64, 48 * 1024, 128) == (12 / 64, 3, "shared memory")
    assert build_cuda.occupancy("sm_90", 64, 49 * 1024, 128) == (16 / 64, 4, "shared memory")  # reserve included
    assert build_cuda.occupancy("sm_90", 32, 0, 1024) == (1.0, 2, "warps")
    assert build_cuda.occupancy("sm_80", 255, 0, 256)[1] == 1  # 255 regs round to 256 per thread: 1 block
    with pytest.raises(ValueError, match="sm_70"):
        build_cuda.occupancy("sm_70", 32, 0, 128)


@needs_nvcc
@needs_cuobjdump
def test_tensor_core_flash_kernels_show_hmma_without_spills():
    """Every flash_(fwd|bwd)*_mma_kernel for __half / __nv_bfloat16 shows HMMA in its SASS on sm_80 and sm_90
    and uses no local memory; build/sass_report.txt prints registers, shared memory and occupancy."""
    sources = sorted((ROOT / "csrc" / "cuda").glob("flash_attention_mma_*.cu"))
    if not sources:
        pytest.skip("csrc/cuda/flash_attention_mma_*.cu are not in this tree yet (the tensor-core kernels)")
    facts, ptxas = _sass_of(sources)
    report = ROOT / "build" / "sass_report.txt"
    report.write_text(build_cuda.format_sass_report(facts))
    problems = build_cuda.mma_kernel_problems(facts, ptxas)
    assert not problems, "tensor-core flash kernels fail the SASS evidence (see build/sass_report.txt):\n" + (
        "\n".join(problems)
    )


# ---------------------------------------------------------------------------------------------
# the built extension

SHOULD_BUILD, WHY = build_cuda.build_decision()


@pytest.fixture(scope="module")
def ops():
    if not SHOULD_BUILD:
        pytest.skip(f"megatron_biomed._C is not built on this machine: {WHY}")
    from megatron_biomed.kernels import csrc_ops

    err = csrc_ops.load_error()
    assert err is None, f"the CUDA build should have run here ({WHY}) but: {err}"
    return torch.ops.megatron_biomed


def test_extension_ops_resolve(ops):
    from megatron_biomed.kernels import csrc_ops

    for name in csrc_ops.OP_NAMES:
        schema = getattr(ops, name).default._schema
        assert schema.name == f"megatron_biomed::{name}"
    # Without a GPU, a call on CPU tensors reaches the dispatcher and finds no CPU kernel.
    x = torch.randn(2, 64)
    with pytest.raises(NotImplementedError, match="CPU"):
        ops.rms_norm_fwd(x, torch.ones(64), 1e-5)


# ---------------------------------------------------------------------------------------------
# The same bindings (csrc/torch) with the launch files compiled against the CPU emulator: runs the
# argument handling of every op end to end on CPU tensors, against float64 references.


@pytest.fixture(scope="module")
def emu_ops():
    from megatron_biomed.kernels import csrc_ops

    lib = build_cuda.build_torch_emu(ROOT, jobs=int(os.environ.get("MAX_JOBS", "2")))
    torch.ops.load_library(str(lib))
    csrc_ops._register_fakes("megatron_biomed_emu")  # the same fakes, for the torch.compile test
    return torch.ops.megatron_biomed_emu


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def _check_grads(fn, ref_fn, inputs, dout, tol):
    xs = [t.clone().requires_grad_() for t in inputs]
    out = fn(*xs)
    grads = torch.autograd.grad(out, xs, dout)
    rs = [t.double().requires_grad_() for t in inputs]
    ref = ref_fn(*rs)
    ref_grads = torch.autograd.grad(ref, rs, dout.double())
    assert out.dtype == inputs[0].dtype and out.shape == ref.shape
    assert _rel(out, ref) < tol
    for g, r in zip(grads, ref_grads):
        assert _rel(g, r) < tol


def test_bound_norms_vs_float64(emu_ops):
    from megatron_biomed.kernels.functions import LayerNormFunction, RMSNormFunction

    g = torch.Generator().manual_seed(11)
    x, w, b = torch.randn(3, 9, 160, generator=g), torch.randn(160, generator=g), torch.randn(160, generator=g)
    dy = torch.randn(3, 9, 160, generator=g)
    _check_grads(
        lambda x, w, b: LayerNormFunction.apply(x, w, b, 1e-5, emu_ops),
        lambda x, w, b: torch.nn.functional.layer_norm(x, (160,), w, b, 1e-5),
        [x, w, b],
        dy,
        1e-5,
    )
    _check_grads(
        lambda x, w: RMSNormFunction.apply(x, w, 1e-6, emu_ops),
        lambda x, w: torch.nn.functional.rms_norm(x, (160,), w, 1e-6),
        [x, w],
        dy,
        1e-5,
    )
    # bf16 through the bindings (dtype dispatch), and LayerNorm without a bias
    xb, wb = x.bfloat16(), w.bfloat16()
    y, mean, _rstd = emu_ops.layer_norm_fwd(xb, wb, None, 1e-5)
    assert y.dtype == torch.bfloat16 and mean.dtype == torch.float32 and mean.shape == (3, 9)
    ref = torch.nn.functional.layer_norm(xb.double(), (160,), wb.double(), None, 1e-5)
    assert _rel(y, ref) < 1e-2
    torch.testing.assert_close(mean, xb.float().mean(-1), rtol=1e-5, atol=1e-5)


def _softmax_ref(x, mask, scale):
    s = (x * scale).masked_fill(mask, float("-inf")) if mask is not None else x * scale
    return torch.nan_to_num(torch.softmax(s, -1), nan=0.0)


def test_bound_softmax_vs_float64(emu_ops):
    from megatron_biomed.kernels.functions import ScaledSoftmaxFunction

    g = torch.Generator().manual_seed(12)
    x, dy = torch.randn(2, 3, 20, 20, generator=g), torch.randn(2, 3, 20, 20, generator=g)
    mask = torch.rand(2, 1, 20, 20, generator=g) < 0.25
    mask[0, 0, 3] = True  # fully masked row -> zeros
    causal = torch.triu(torch.ones(20, 20, dtype=torch.bool), 1).view(1, 1, 20, 20)
    for m in (mask, mask[:1], None):
        _check_grads(
            lambda x, m=m: ScaledSoftmaxFunction.apply(x, m, 0.9, False, emu_ops),
            lambda x, m=m: _softmax_ref(x, m, 0.9),
            [x],
            dy,
            1e-5,
        )
    _check_grads(
        lambda x: ScaledSoftmaxFunction.apply(x, None, 1.1, True, emu_ops),
        lambda x: _softmax_ref(x, causal, 1.1),
        [x],
        dy,
        1e-5,
    )


def _attention_ref(q, k, v, causal, scale):
    sq, h, sk, hkv = q.shape[1], q.shape[2], k.shape[1], k.shape[2]
    kt = k.transpose(1, 2).repeat_interleave(h // hkv, 1)
    vt = v.transpose(1, 2).repeat_interleave(h // hkv, 1)
    s = q.transpose(1, 2) @ kt.transpose(-1, -2) * scale
    if causal:
        i, j = torch.arange(sq).view(-1, 1), torch.arange(sk).view(1, -1)
        s = s.masked_fill(j > i + sk - sq, float("-inf"))
    return torch.nan_to_num(torch.softmax(s, -1), nan=0.0).matmul(vt).transpose(1, 2)


@pytest.mark.parametrize("sq,sk,h,hkv,d,causal", [(33, 33, 4, 2, 64, True), (20, 45, 3, 1, 96, False)])
def test_bound_flash_attention_vs_float64(emu_ops, sq, sk, h, hkv, d, causal):
    from megatron_biomed.kernels.functions import FlashAttentionFunction

    g = torch.Generator().manual_seed(sq + d)
    q, k, v = (torch.randn(2, s, n, d, generator=g) for s, n in ((sq, h), (sk, hkv), (sk, hkv)))
    dout = torch.randn(2, sq, h, d, generator=g)
    _check_grads(
        lambda q, k, v: FlashAttentionFunction.apply(q, k, v, 0.1, causal, emu_ops),
        lambda q, k, v: _attention_ref(q, k, v, causal, 0.1),
        [q, k, v],
        dout,
        1e-5,
    )
    _out, lse = emu_ops.flash_attn_fwd(q, k, v, 0.1, causal)
    assert lse.shape == (2, h, sq) and lse.dtype == torch.float32


def test_bound_ops_reject_bad_arguments(emu_ops):
    x = torch.randn(4, 64)
    with pytest.raises(RuntimeError, match="Double is not supported"):  # not a kernel dtype
        emu_ops.rms_norm_fwd(x.double(), torch.ones(64, dtype=torch.float64), 1e-5)
    with pytest.raises(RuntimeError, match="weight shape"):
        emu_ops.rms_norm_fwd(x, torch.ones(32), 1e-5)
    with pytest.raises(RuntimeError, match="contiguous"):
        emu_ops.layer_norm_fwd(torch.randn(64, 4).t(), torch.ones(64), None, 1e-5)
    q = torch.randn(1, 8, 2, 48)
    with pytest.raises(RuntimeError, match="head_dim 48"):  # the launcher's std::invalid_argument
        emu_ops.flash_attn_fwd(q, q, q, 1.0, False)
    with pytest.raises(RuntimeError, match="mask must be bool"):
        emu_ops.scaled_masked_softmax_fwd(torch.randn(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), 1.0)
    with pytest.raises(RuntimeError, match="seqlen_q == seqlen_k"):
        emu_ops.scaled_causal_softmax_fwd(torch.randn(1, 1, 4, 8), 1.0)


def test_bound_ops_trace_under_torch_compile(emu_ops):
    """The autograd Functions over the bound ops compile as one graph (fake impls + schemas), forward
    and backward, and the compiled gradients equal the eager ones."""
    from megatron_biomed.kernels.functions import FlashAttentionFunction, LayerNormFunction, ScaledSoftmaxFunction

    def f(x, w, b, s, q, k, v):
        y = LayerNormFunction.apply(x, w, b, 1e-5, emu_ops)
        p = ScaledSoftmaxFunction.apply(s, None, 0.5, True, emu_ops)
        o = FlashAttentionFunction.apply(q, k, v, 0.125, True, emu_ops)
        return (y * y).sum() + (p * s).sum() + (o * o).sum()

    g = torch.Generator().manual_seed(13)
    shapes = [(4, 64), (64,), (64,), (1, 2, 16, 16), (1, 16, 2, 64), (1, 16, 1, 64), (1, 16, 1, 64)]
    inputs = [torch.randn(s, generator=g, requires_grad=True) for s in shapes]
    torch._dynamo.reset()
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    out = compiled(*inputs)
    grads = torch.autograd.grad(out, inputs)
    ref = f(*inputs)
    ref_grads = torch.autograd.grad(ref, inputs)
    torch.testing.assert_close(out, ref)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want)
