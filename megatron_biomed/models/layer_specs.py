"""The one place that decides how a GPT transformer layer is built (megatron-core ModuleSpec).

``kernels`` picks the implementation of the norms, the softmax and the core attention:

* ``"torch"`` -- megatron-core's local (pure PyTorch) spec; runs everywhere.
* ``"csrc"``  -- the local spec with our kernels (megatron_biomed.kernels): KernelNorm for the
  input / pre-MLP (and q/k) norms, KernelDotProductAttention (flash attention) as core attention.
  Without a GPU the kernels fall back to PyTorch (logged once).
* ``"emu"``   -- the same modules running the kernels on the CPU emulator (tests, CPU only).
* ``"te"``    -- megatron-core's Transformer Engine spec (needs Transformer Engine and a GPU).

``gpt_layer_spec`` gives the per-layer spec (the final norm of the block is then megatron-core's
default); ``gpt_block_spec`` also puts the final norm on the chosen kernels.
"""

from __future__ import annotations

from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import (
    TransformerBlockSubmodules,
    get_num_layers_to_build,
)

from megatron_biomed.kernels.backends import KERNEL_CHOICES, check_available

__all__ = ["KERNEL_CHOICES", "gpt_block_spec", "gpt_layer_spec", "norm_spec"]


def _check(kernels: str, normalization: str) -> None:
    if kernels not in KERNEL_CHOICES:
        raise ValueError(f"kernels={kernels!r} is not one of {KERNEL_CHOICES}")
    if normalization not in ("LayerNorm", "RMSNorm"):
        raise ValueError(f"normalization={normalization!r} must be 'LayerNorm' or 'RMSNorm'")
    check_available(kernels)  # a clear error now rather than at the first forward


def norm_spec(kernels: str) -> ModuleSpec:
    """Spec of a norm built as ``spec(config=, hidden_size=, eps=)`` (LayerNorm or RMSNorm by
    ``config.normalization``) on ``kernels``."""
    if kernels == "te":
        from megatron.core.extensions.transformer_engine import TENorm

        return ModuleSpec(module=TENorm)
    if kernels == "torch":
        from megatron.core.transformer.torch_norm import WrappedTorchNorm

        return ModuleSpec(module=WrappedTorchNorm)
    from megatron_biomed.kernels.modules import KernelNorm

    return ModuleSpec(module=KernelNorm, params={"kernels": kernels})


def gpt_layer_spec(
    *, normalization: str = "LayerNorm", kernels: str = "torch", qk_layernorm: bool = False
) -> ModuleSpec:
    """Layer spec for a GPT-2 (LayerNorm) or LLaMA (RMSNorm) style decoder layer."""
    _check(kernels, normalization)
    if kernels == "te":
        from megatron.core.models.gpt.gpt_layer_specs import (
            get_gpt_layer_with_transformer_engine_spec,
        )

        return get_gpt_layer_with_transformer_engine_spec(qk_layernorm=qk_layernorm)
    spec = get_gpt_layer_local_spec(normalization=normalization, qk_layernorm=qk_layernorm)
    if kernels == "torch":
        return spec
    from megatron_biomed.kernels.modules import KernelDotProductAttention

    sub = spec.submodules
    norm = norm_spec(kernels)
    sub.input_layernorm = norm
    sub.pre_mlp_layernorm = norm
    attn = sub.self_attention.submodules
    attn.core_attention = ModuleSpec(module=KernelDotProductAttention, params={"kernels": kernels})
    if qk_layernorm:
        attn.q_layernorm = norm
        attn.k_layernorm = norm
    return spec


def gpt_block_spec(
    config,
    *,
    normalization: str = "LayerNorm",
    kernels: str = "torch",
    qk_layernorm: bool = False,
    vp_stage: int | None = None,
    pp_rank: int | None = None,
) -> TransformerBlockSubmodules:
    """Block spec (pass as GPTModel's ``transformer_layer_spec``): this pipeline stage's layers from
    :func:`gpt_layer_spec` plus the final norm on the same ``kernels``."""
    layer = gpt_layer_spec(normalization=normalization, kernels=kernels, qk_layernorm=qk_layernorm)
    num_layers = get_num_layers_to_build(config, vp_stage=vp_stage, pp_rank=pp_rank)
    return TransformerBlockSubmodules(layer_specs=[layer] * num_layers, layer_norm=norm_spec(kernels))
