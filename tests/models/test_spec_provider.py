"""megatron_biomed.kernels providers: each ``model.kernels`` choice resolves to the expected modules,
unavailable choices fail with the existing clear errors, and the layer specs are built from the provider."""

from __future__ import annotations

import pytest
import torch
from megatron.core.extensions.transformer_engine_spec_provider import TESpecProvider
from megatron.core.models.gpt.gpt_layer_specs import get_mlp_module_spec_for_backend
from megatron.core.tensor_parallel.layers import ColumnParallelLinear, RowParallelLinear
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.torch_norm import WrappedTorchNorm
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules

from megatron_biomed.kernels import csrc_ops
from megatron_biomed.kernels import registry as kernel_registry
from megatron_biomed.kernels.errors import KernelBackendUnavailable
from megatron_biomed.kernels.modules import KernelDotProductAttention, KernelNorm
from megatron_biomed.kernels.providers import CsrcProvider, EmuProvider, TorchProvider
from megatron_biomed.kernels.registry import KERNEL_PROVIDERS, get_provider, provider_class
from megatron_biomed.models.gpt.specs import gpt_block_spec, gpt_layer_spec, gpt_model_spec, norm_spec

TE_MISSING = provider_class("te").unavailable_reason()
EMU_MISSING = provider_class("emu").unavailable_reason()
OURS = ["csrc"] + ([] if EMU_MISSING else ["emu"])


def test_one_provider_per_kernels_choice():
    # the order config validation lists
    assert KERNEL_PROVIDERS.names() == ("auto", "csrc", "te", "sdpa", "torch", "emu")
    for kernels, cls in KERNEL_PROVIDERS.items():
        assert cls.name == kernels
        assert (cls.megatron_provider is TESpecProvider) == (kernels == "te")  # only te's modules are TE's
        # what parallel/layout.py and the planner ask instead of comparing the name with "torch"
        assert cls.supports_sequence_parallel == (kernels != "torch")
        assert cls.fused_softmax == cls.fused_attention == (kernels != "torch")
        assert cls.fused_norms == (kernels not in ("torch", "sdpa"))  # sdpa runs PyTorch's norms
    # auto answers for the planner as the choice a GPU machine with our extension built resolves to
    auto, csrc = provider_class("auto"), provider_class("csrc")
    assert (auto.fused_norms, auto.fused_softmax, auto.fused_attention) == (
        csrc.fused_norms, csrc.fused_softmax, csrc.fused_attention
    )  # fmt: skip


def test_torch_provider_is_megatron_cores_local_choice():
    p = get_provider("torch")
    assert isinstance(p, TorchProvider)
    assert p.core_attention() is DotProductAttention
    assert p.layer_norm(rms_norm=True) is WrappedTorchNorm
    assert p.norm().module is WrappedTorchNorm
    assert p.final_norm() is None  # TransformerBlock's default, as with megatron-core's local spec
    assert (p.column_parallel_linear(), p.row_parallel_linear()) == (ColumnParallelLinear, RowParallelLinear)
    assert not p.fuse_layernorm_and_linear() and p.column_parallel_layer_norm_linear() is None


@pytest.mark.parametrize("kernels", OURS)
def test_kernel_providers_give_our_modules(kernels):
    p = get_provider(kernels)
    assert type(p) is {"csrc": CsrcProvider, "emu": EmuProvider}[kernels]
    for spec in (p.norm(), p.final_norm(), p.layer_norm(rms_norm=True), p.layer_norm(for_qk=True)):
        assert spec.module is KernelNorm and spec.params == {"kernels": kernels}
    attention = p.core_attention()
    assert attention.module is KernelDotProductAttention and attention.params == {"kernels": kernels}
    # Linears and MLP stay megatron-core's local ones; megatron-core's spec helpers accept the provider.
    assert (p.column_parallel_linear(), p.row_parallel_linear()) == (ColumnParallelLinear, RowParallelLinear)
    assert get_mlp_module_spec_for_backend(backend=p) is not None


def test_unknown_and_unavailable_choices_raise_the_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="not one of"):
        get_provider("triton")
    with pytest.raises(ValueError, match="not one of"):
        provider_class("cuda")
    assert provider_class("te").megatron_provider is TESpecProvider  # the class is known without Transformer Engine
    if TE_MISSING:
        for build in (lambda: get_provider("te"), lambda: gpt_layer_spec(kernels="te"), lambda: norm_spec("te")):
            with pytest.raises(KernelBackendUnavailable, match="Transformer Engine is not installed"):
                build()
    # csrc on a GPU machine without the extension: say what to build.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(csrc_ops, "_state", {"loaded": True, "error": "megatron_biomed._C ... is not built"})
    with pytest.raises(KernelBackendUnavailable, match="not built"):
        get_provider("csrc")


def test_a_provider_passes_through_and_specs_take_it():
    p = get_provider("csrc")
    assert get_provider(p) is p
    spec = gpt_layer_spec(normalization="RMSNorm", kernels=p, qk_layernorm=True)
    attn = spec.submodules.self_attention.submodules
    assert attn.core_attention.module is KernelDotProductAttention
    assert attn.q_layernorm.module is KernelNorm and spec.submodules.input_layernorm.module is KernelNorm
    assert norm_spec(p).module is KernelNorm
    with pytest.raises(ValueError, match="normalization='rmsnorm'"):
        gpt_layer_spec(normalization="rmsnorm", kernels=p)


def test_torch_layer_spec_is_megatron_cores_local_spec():
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec

    for normalization in ("LayerNorm", "RMSNorm"):
        ours = gpt_layer_spec(normalization=normalization, kernels="torch", qk_layernorm=True).submodules
        theirs = get_gpt_layer_local_spec(normalization=normalization, qk_layernorm=True).submodules
        for name in ("input_layernorm", "pre_mlp_layernorm"):
            assert getattr(ours, name) is getattr(theirs, name)
        for name in ("core_attention", "q_layernorm", "k_layernorm", "linear_qkv", "linear_proj"):
            assert getattr(ours.self_attention.submodules, name) is getattr(theirs.self_attention.submodules, name)
        assert ours.sharded_state_dict_keys_map == theirs.sharded_state_dict_keys_map


def _tconfig():
    from megatron.core.transformer.transformer_config import TransformerConfig

    return TransformerConfig(
        num_layers=4, hidden_size=64, num_attention_heads=4, use_cpu_initialization=True, normalization="RMSNorm"
    )


def test_model_spec_puts_the_final_norm_where_the_provider_says(single_rank_parallel):
    config = _tconfig()
    torch_spec = gpt_model_spec(config, normalization="RMSNorm", kernels="torch")
    assert isinstance(torch_spec, ModuleSpec)  # megatron-core picks the final norm, as before
    block = gpt_block_spec(config, normalization="RMSNorm", kernels="torch")
    assert block.layer_norm.module is WrappedTorchNorm and len(block.layer_specs) == 4
    for kernels in OURS:
        spec = gpt_model_spec(config, normalization="RMSNorm", kernels=kernels)
        assert isinstance(spec, TransformerBlockSubmodules) and len(spec.layer_specs) == 4
        assert spec.layer_norm.module is KernelNorm and spec.layer_norm.params == {"kernels": kernels}


def test_gpt_family_resolves_kernels_once(single_rank_parallel, monkeypatch):
    from megatron_biomed.config import get_preset
    from megatron_biomed.models.registry import build_model_chunks

    calls = []
    real = kernel_registry.provider_class

    def counting(kernels):
        calls.append(kernels)
        return real(kernels)

    monkeypatch.setattr(kernel_registry, "provider_class", counting)
    cfg = get_preset("tiny-llama")
    cfg.model.kernels = "csrc"
    cfg.parallel.pipeline_model_parallel_size = 1
    (model,) = build_model_chunks(cfg)
    assert calls == ["csrc"]  # one resolution for the model; the modules check only their own choice
    assert isinstance(model.decoder.final_layernorm, KernelNorm)
    assert all(
        isinstance(layer.self_attention.core_attention, KernelDotProductAttention) for layer in model.decoder.layers
    )
