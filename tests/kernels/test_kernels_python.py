"""megatron_biomed.kernels: backend choice and fallback, autograd Functions on the emulated kernels
against float64 references, the megatron-core modules, the layer specs and the fake (meta)
implementations of the ``torch.ops.megatron_biomed`` ops.
"""

from __future__ import annotations

import copy
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from megatron_biomed.kernels import csrc_ops, providers
from megatron_biomed.kernels.errors import KernelBackendUnavailable, KernelError
from megatron_biomed.kernels.functions import (
    flash_attention,
    layer_norm,
    rms_norm,
    scaled_causal_softmax,
    scaled_masked_softmax,
)
from megatron_biomed.kernels.registry import get_provider, provider_class

ROOT = Path(__file__).resolve().parents[2]
TE_MISSING = provider_class("te").unavailable_reason()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


# ---------------------------------------------------------------------------------------------
# backend choice


def test_csrc_without_gpu_falls_back_to_torch_logged_once(monkeypatch, caplog):
    monkeypatch.setattr(providers, "_fallbacks_logged", set())
    cpu, csrc = torch.device("cpu"), provider_class("csrc")
    with caplog.at_level(logging.WARNING, logger=providers.__name__):
        assert csrc.op_backend(cpu, "layer_norm").name == "torch"
        assert csrc.op_backend(cpu, "layer_norm").name == "torch"
        assert csrc.op_backend(cpu, "rms_norm").name == "torch"
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 2 and all("runs on PyTorch" in m for m in msgs), msgs
    x, w, b = torch.randn(3, 5, 32), torch.randn(32), torch.randn(32)
    torch.testing.assert_close(layer_norm(x, w, b, kernels="csrc"), F.layer_norm(x, (32,), w, b), rtol=0, atol=0)


def test_unavailable_backends_raise_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="not one of"):
        layer_norm(torch.zeros(2, 8), torch.ones(8), None, kernels="cuda")
    with pytest.raises(KernelBackendUnavailable, match="CPU tensors only"):
        provider_class("emu").op_backend(torch.device("cuda"), "layer_norm")
    # csrc on a CUDA tensor without the extension: say what to build, never fall back silently.
    monkeypatch.setattr(csrc_ops, "_state", {"loaded": True, "error": "megatron_biomed._C ... is not built"})
    with pytest.raises(KernelBackendUnavailable, match="not built"):
        provider_class("csrc").op_backend(torch.device("cuda"), "flash_attention")
    with pytest.raises(KernelBackendUnavailable, match="functional op"):
        provider_class("te").op_backend(torch.device("cpu"), "layer_norm")
    if TE_MISSING:
        with pytest.raises(KernelBackendUnavailable, match="Transformer Engine is not installed"):
            provider_class("te").check_available()
    else:
        provider_class("te").check_available()


# ---------------------------------------------------------------------------------------------
# autograd Functions on the emulated kernels vs float64


def _grads(y, inputs, dy):
    return torch.autograd.grad(y, inputs, dy)


@pytest.mark.parametrize("shape", [(2, 7, 96), (5, 1000)])
def test_layer_norm_emu_vs_float64(emu_module, shape):
    g = torch.Generator().manual_seed(shape[-1])
    x = torch.randn(shape, generator=g) * 3 + 1
    w, b = torch.randn(shape[-1], generator=g), torch.randn(shape[-1], generator=g)
    dy = torch.randn(shape, generator=g)
    inputs = [t.clone().requires_grad_() for t in (x, w, b)]
    y = layer_norm(*inputs, 1e-5, kernels="emu")
    grads = _grads(y, inputs, dy)
    ref_in = [t.double().requires_grad_() for t in (x, w, b)]
    ref = F.layer_norm(ref_in[0], (shape[-1],), ref_in[1], ref_in[2], 1e-5)
    ref_grads = _grads(ref, ref_in, dy.double())
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert _rel(y, ref) < 2e-6
    for got, want in zip(grads, ref_grads):
        assert _rel(got, want) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_emu_vs_float64(emu_module, dtype):
    g = torch.Generator().manual_seed(7)
    x, w, dy = torch.randn(3, 4, 128, generator=g), torch.randn(128, generator=g), torch.randn(3, 4, 128, generator=g)
    inputs = [x.to(dtype).requires_grad_(), w.to(dtype).requires_grad_()]
    y = rms_norm(*inputs, 1e-6, kernels="emu")
    grads = _grads(y, inputs, dy.to(dtype))
    ref_in = [t.detach().double().requires_grad_() for t in inputs]
    ref = F.rms_norm(ref_in[0], (128,), ref_in[1], 1e-6)
    ref_grads = _grads(ref, ref_in, dy.to(dtype).double())
    assert y.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 2e-2  # bf16: a few units of its 8-bit mantissa
    assert _rel(y, ref) < tol
    for got, want in zip(grads, ref_grads):
        assert _rel(got, want) < tol


def _softmax_ref(x, mask, scale):
    s = x.double() * scale
    if mask is not None:
        s = s.masked_fill(mask, float("-inf"))
    p = torch.softmax(s, -1)
    return torch.nan_to_num(p, nan=0.0)  # fully masked rows: 0


def test_masked_softmax_emu_vs_float64(emu_module):
    g = torch.Generator().manual_seed(3)
    b, h, sq, sk = 2, 3, 8, 40
    x = torch.randn(b, h, sq, sk, generator=g)
    mask = torch.rand(b, 1, sq, sk, generator=g) < 0.3
    mask[1, 0, 2] = True  # a fully masked row gives zeros, like the kernels
    dy = torch.randn(b, h, sq, sk, generator=g)
    for kernels in ("emu", "torch"):
        xi = x.clone().requires_grad_()
        y = scaled_masked_softmax(xi, mask, 0.7, kernels=kernels)
        (dx,) = _grads(y, [xi], dy)
        xr = x.double().requires_grad_()
        ref = _softmax_ref(xr, mask, 0.7)
        (dref,) = _grads(ref, [xr], dy.double())
        assert _rel(y, ref) < 2e-6 and _rel(dx, dref) < 1e-5, kernels
        assert torch.all(y[1, :, 2] == 0)
    # a mask broadcast over the batch
    m1 = mask[:1]
    assert _rel(scaled_masked_softmax(x, m1, 1.0, kernels="emu"), _softmax_ref(x, m1.expand(b, 1, sq, sk), 1.0)) < 2e-6


def test_causal_softmax_emu_vs_float64(emu_module):
    g = torch.Generator().manual_seed(4)
    x, dy = torch.randn(2, 2, 33, 33, generator=g), torch.randn(2, 2, 33, 33, generator=g)
    xi = x.clone().requires_grad_()
    y = scaled_causal_softmax(xi, 1.3, kernels="emu")
    (dx,) = _grads(y, [xi], dy)
    xr = x.double().requires_grad_()
    ref = _softmax_ref(xr, torch.triu(torch.ones(33, 33, dtype=torch.bool), 1), 1.3)
    (dref,) = _grads(ref, [xr], dy.double())
    assert _rel(y, ref) < 2e-6 and _rel(dx, dref) < 1e-5


def _attention_ref(q, k, v, causal, scale):
    sq, h = q.shape[1], q.shape[2]
    sk, hkv = k.shape[1], k.shape[2]
    qt = q.transpose(1, 2)
    kt = k.transpose(1, 2).repeat_interleave(h // hkv, 1)
    vt = v.transpose(1, 2).repeat_interleave(h // hkv, 1)
    s = qt @ kt.transpose(-1, -2) * scale
    if causal:
        i, j = torch.arange(sq).view(-1, 1), torch.arange(sk).view(1, -1)
        s = s.masked_fill(j > i + sk - sq, float("-inf"))
    return torch.nan_to_num(torch.softmax(s, -1), nan=0.0).matmul(vt).transpose(1, 2)


@pytest.mark.parametrize(
    "sq,sk,h,hkv,d,causal",
    [(40, 40, 4, 2, 64, True), (17, 50, 2, 2, 80, False), (24, 56, 6, 2, 128, True)],
)
def test_flash_attention_emu_vs_float64(emu_module, sq, sk, h, hkv, d, causal):
    g = torch.Generator().manual_seed(sq * sk)
    q, k, v = (
        torch.randn(2, sq, h, d, generator=g),
        torch.randn(2, sk, hkv, d, generator=g),
        torch.randn(2, sk, hkv, d, generator=g),
    )
    dout = torch.randn(2, sq, h, d, generator=g)
    scale = d**-0.5
    inputs = [t.clone().requires_grad_() for t in (q, k, v)]
    out = flash_attention(*inputs, causal=causal, softmax_scale=scale, kernels="emu")
    grads = _grads(out, inputs, dout)
    ref_in = [t.double().requires_grad_() for t in (q, k, v)]
    ref = _attention_ref(*ref_in, causal, scale)
    ref_grads = _grads(ref, ref_in, dout.double())
    assert out.shape == q.shape and out.dtype == q.dtype
    assert _rel(out, ref) < 1e-5
    for got, want in zip(grads, ref_grads):
        assert _rel(got, want) < 1e-5
    # the torch backend computes the same thing (SDPA, with bottom-right causal alignment)
    torch_out = flash_attention(q, k, v, causal=causal, softmax_scale=scale, kernels="torch")
    assert _rel(torch_out, ref) < 1e-5


# ---------------------------------------------------------------------------------------------
# megatron-core modules and layer specs


def _config(**kw):
    from megatron.core.transformer.transformer_config import TransformerConfig

    base = {
        "num_layers": 1,
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_query_groups": 2,
        "use_cpu_initialization": True,
        "attention_dropout": 0.0,
        "hidden_dropout": 0.0,
        "masked_softmax_fusion": False,
    }
    base.update(kw)
    return TransformerConfig(**base)


@pytest.mark.parametrize("normalization", ["LayerNorm", "RMSNorm"])
def test_kernel_norm_matches_megatron_torch_norm(emu_module, normalization):
    from megatron.core.transformer.torch_norm import WrappedTorchNorm

    from megatron_biomed.kernels.modules import KernelNorm

    config = _config(normalization=normalization)
    ref = WrappedTorchNorm(config=config, hidden_size=64, eps=1e-5)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_()
    x = torch.randn(5, 2, 64)
    for kernels in ("emu", "csrc", "torch"):
        norm = KernelNorm(config=config, hidden_size=64, eps=1e-5, kernels=kernels)
        norm.load_state_dict(ref.state_dict(), strict=True)
        assert _rel(norm(x), ref(x)) < 2e-6, kernels
        assert _rel(copy.deepcopy(norm)(x), ref(x)) < 2e-6, kernels
    zc = KernelNorm(
        config=_config(normalization=normalization, layernorm_zero_centered_gamma=True), hidden_size=64, kernels="emu"
    )
    assert torch.all(zc.weight == 0)
    assert (
        _rel(zc(x), F.layer_norm(x, (64,)) if normalization == "LayerNorm" else F.rms_norm(x, (64,), eps=1e-5)) < 2e-6
    )


def test_kernel_modules_te_needs_transformer_engine():
    from megatron_biomed.kernels.modules import KernelNorm

    # Our modules never become Transformer Engine's: with kernels="te" they are refused (TE missing, or
    # "take TE's modules from the te provider"); the te provider's specs name TENorm / TEDotProductAttention.
    with pytest.raises(KernelError, match="Transformer Engine"):
        KernelNorm(config=_config(), hidden_size=64, kernels="te")
    if not TE_MISSING:
        pytest.skip("Transformer Engine is installed; its modules need a GPU")
    with pytest.raises(KernelBackendUnavailable, match="Transformer Engine"):
        get_provider("te").norm()


@pytest.mark.parametrize("kv_channels,mask_kind", [(64, "causal"), (16, "causal"), (16, "padding"), (64, "padding")])
def test_core_attention_matches_megatron(single_rank_parallel, emu_module, kv_channels, mask_kind):
    from megatron.core.transformer.dot_product_attention import DotProductAttention
    from megatron.core.transformer.enums import AttnMaskType

    from megatron_biomed.kernels.modules import KernelDotProductAttention

    config = _config(kv_channels=kv_channels)
    mask_type = AttnMaskType.causal if mask_kind == "causal" else AttnMaskType.padding
    args = {"config": config, "layer_number": 1, "attn_mask_type": mask_type, "attention_type": "self"}
    ref = DotProductAttention(**args)
    ours = KernelDotProductAttention(**args, kernels="emu")
    s, b = 24, 2
    g = torch.Generator().manual_seed(kv_channels)
    q = torch.randn(s, b, 4, kv_channels, generator=g)
    k, v = torch.randn(s, b, 2, kv_channels, generator=g), torch.randn(s, b, 2, kv_channels, generator=g)
    if mask_kind == "causal":
        mask = None  # causal layers are given no mask (pretraining passes none; a given one is used as given)
    else:  # key padding per sequence; no row fully masked (megatron's torch path fills -10000 there)
        lengths = torch.tensor([s, 15])
        mask = (torch.arange(s).view(1, 1, 1, s) >= lengths.view(b, 1, 1, 1)).expand(b, 1, s, s).contiguous()
    dout = torch.randn(s, b, 4 * kv_channels, generator=g)
    results = []
    for module in (ref, ours):
        inputs = [t.clone().requires_grad_() for t in (q, k, v)]
        out = module(*inputs, mask)
        results.append((out, _grads(out, inputs, dout)))
    (ref_out, ref_grads), (out, grads) = results
    assert out.shape == (s, b, 4 * kv_channels)
    assert _rel(out, ref_out) < 1e-5
    for got, want in zip(grads, ref_grads):
        assert _rel(got, want) < 1e-5
    expected = "flash attention" if (kv_channels == 64 and mask_kind == "causal") else "fused softmax"
    assert ours._logged_paths == {expected}


def test_layer_specs_pick_the_modules():
    from megatron.core.transformer.dot_product_attention import DotProductAttention

    from megatron_biomed.kernels.modules import KernelDotProductAttention, KernelNorm
    from megatron_biomed.models.gpt.specs import gpt_layer_spec

    torch_spec = gpt_layer_spec(normalization="RMSNorm", kernels="torch")
    assert torch_spec.submodules.self_attention.submodules.core_attention is DotProductAttention
    for kernels in ("emu", "csrc"):
        spec = gpt_layer_spec(normalization="RMSNorm", kernels=kernels, qk_layernorm=True)
        sub = spec.submodules
        attn = sub.self_attention.submodules
        for norm in (sub.input_layernorm, sub.pre_mlp_layernorm, attn.q_layernorm, attn.k_layernorm):
            assert norm.module is KernelNorm and norm.params == {"kernels": kernels}
        assert attn.core_attention.module is KernelDotProductAttention
        assert attn.core_attention.params == {"kernels": kernels}
    with pytest.raises(ValueError, match="not one of"):
        gpt_layer_spec(kernels="triton")
    if TE_MISSING:
        with pytest.raises(KernelBackendUnavailable, match="Transformer Engine"):
            gpt_layer_spec(kernels="te")


# ---------------------------------------------------------------------------------------------
# fake implementations of the CUDA ops (need the built extension, not a GPU)


@pytest.fixture(scope="module")
def ops():
    sys.path.insert(0, str(ROOT / "csrc"))
    import build_cuda  # csrc/build_cuda.py

    should, why = build_cuda.build_decision()
    if not should:
        pytest.skip(f"megatron_biomed._C is not built on this machine: {why}")
    err = csrc_ops.load_error()
    assert err is None, f"the CUDA build should have run here ({why}) but: {err}"
    return torch.ops.megatron_biomed


def _fake_cases(device: str, dtype: torch.dtype):
    mb = torch.ops.megatron_biomed

    def t(*s, dt=dtype):
        return torch.empty(*s, device=device, dtype=dt)

    x, w = t(3, 5, 80), t(80)
    y, mean, rstd = mb.layer_norm_fwd(x, w, w, 1e-5)
    assert (y.shape, y.dtype, mean.shape, mean.dtype, rstd.shape) == (x.shape, dtype, (3, 5), torch.float32, (3, 5))
    dx, dw, db = mb.layer_norm_bwd(x, x, w, mean, rstd)
    assert (dx.shape, dw.shape, db.shape, dw.dtype) == (x.shape, w.shape, w.shape, dtype)
    y, rstd = mb.rms_norm_fwd(x, w, 1e-6)
    assert (y.shape, rstd.shape, rstd.dtype) == (x.shape, (3, 5), torch.float32)
    dx, dw = mb.rms_norm_bwd(x, x, w, rstd)
    assert (dx.shape, dw.shape) == (x.shape, w.shape)
    s, mask = t(2, 4, 16, 16), t(2, 1, 16, 16, dt=torch.bool)
    for p in (
        mb.scaled_masked_softmax_fwd(s, mask, 0.5),
        mb.scaled_masked_softmax_fwd(s, None, 0.5),
        mb.scaled_causal_softmax_fwd(s, 0.5),
        mb.scaled_softmax_bwd(s, s, 0.5),
    ):
        assert (p.shape, p.dtype) == (s.shape, dtype)
    q, k = t(2, 48, 8, 128), t(2, 40, 2, 128)
    out, lse = mb.flash_attn_fwd(q, k, k, 0.088, True)
    assert (out.shape, out.dtype, lse.shape, lse.dtype) == (q.shape, dtype, (2, 8, 48), torch.float32)
    dq, dk, dv = mb.flash_attn_bwd(out, q, k, k, out, lse, 0.088, True)
    assert (dq.shape, dk.shape, dv.shape, dk.dtype) == (q.shape, k.shape, k.shape, dtype)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_fake_impls_on_meta(ops, dtype):
    assert _fake_cases("meta", dtype).device.type == "meta"


def test_fake_impls_under_fake_tensor_mode_cuda(ops):
    # In a fresh process: megatron_biomed.parallel.cpu's patches (applied by other tests in this
    # session) send device="cuda" to the CPU on purpose, which is not what is tested here.
    code = textwrap.dedent(
        """
        import sys, torch
        from torch._subclasses.fake_tensor import FakeTensorMode
        sys.path.insert(0, {tests!r})
        from test_kernels_python import _fake_cases
        from megatron_biomed.kernels import csrc_ops, functions
        from megatron_biomed.kernels.providers import CsrcProvider
        assert csrc_ops.load_error() is None
        with FakeTensorMode():
            out = _fake_cases("cuda", torch.bfloat16)
            # the autograd Functions' forward on the csrc ops (the engine cannot run a backward on
            # fake CUDA tensors without a device, so the backward ops are covered by _fake_cases)
            q = torch.empty(2, 64, 8, 64, device="cuda", dtype=torch.float16)
            k = torch.empty(2, 64, 2, 64, device="cuda", dtype=torch.float16)
            att = functions.FlashAttentionFunction.apply(q, k, k, 0.125, True, CsrcProvider.primitives)
            x = torch.empty(4, 3, 256, device="cuda", dtype=torch.float32)
            y = functions.RMSNormFunction.apply(x, x[0, 0], 1e-5, CsrcProvider.primitives)
        print(out.device, out.dtype, att.device, att.dtype, tuple(att.shape), y.device, tuple(y.shape))
        """
    ).format(tests=str(Path(__file__).parent))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == [
        "cuda:0",
        "torch.bfloat16",
        "cuda:0",
        "torch.float16",
        "(2,",
        "64,",
        "8,",
        "64)",
        "cuda:0",
        "(4,",
        "3,",
        "256)",
    ]


def test_fake_impls_reject_what_the_kernels_reject(ops):
    def m(*s, dt=torch.float16):
        return torch.empty(*s, device="meta", dtype=dt)

    with pytest.raises(RuntimeError, match="head_dim 48"):
        ops.flash_attn_fwd(m(1, 8, 4, 48), m(1, 8, 4, 48), m(1, 8, 4, 48), 1.0, False)
    with pytest.raises(RuntimeError, match="multiple of kv heads"):
        ops.flash_attn_fwd(m(1, 8, 4, 64), m(1, 8, 3, 64), m(1, 8, 3, 64), 1.0, False)
    with pytest.raises(RuntimeError, match="float64"):
        ops.rms_norm_fwd(m(2, 64, dt=torch.float64), m(64, dt=torch.float64), 1e-5)
    with pytest.raises(RuntimeError, match="seqlen_q == seqlen_k"):
        ops.scaled_causal_softmax_fwd(m(1, 1, 4, 8), 1.0)
    with pytest.raises(RuntimeError, match="mask shape"):
        ops.scaled_masked_softmax_fwd(m(2, 1, 4, 8), m(2, 1, 4, 4, dt=torch.bool), 1.0)
