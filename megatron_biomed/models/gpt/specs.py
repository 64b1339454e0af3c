"""The one place that decides how a GPT transformer layer is built (megatron-core ModuleSpec).

``kernels`` -- a choice name or the provider it resolves to (megatron_biomed/kernels/registry.py) --
picks the modules of the norms, the softmax and the core attention:

* ``"torch"`` -- megatron-core's local (pure PyTorch) spec; runs everywhere.
* ``"csrc"``  -- the local spec with our kernels (megatron_biomed.kernels): KernelNorm for the
  input / pre-MLP (and q/k) norms, KernelDotProductAttention (flash attention) as core attention.
  Without a GPU the kernels fall back to PyTorch (logged once).
* ``"emu"``   -- the same modules running the kernels on the CPU emulator (tests, CPU only).
* ``"te"``    -- megatron-core's Transformer Engine spec (needs Transformer Engine and a GPU).
* ``"sdpa"``  -- the local spec with PyTorch SDPA as core attention (SdpaDotProductAttention) and PyTorch norms
  in KernelNorm.
* ``"auto"``  -- one of the above, resolved by get_provider (kernels/registry.py; models/gpt/family.py resolves it
  with the run's facts, the functions here with the defaults).

``gpt_layer_spec`` gives the per-layer spec (the final norm of the block is then megatron-core's
default); ``gpt_block_spec`` also puts the final norm on the chosen kernels; ``gpt_model_spec`` is what
models/gpt/family.py hands to GPTModel (the block spec, or the layer spec where the provider leaves the final
norm to megatron-core, as ``torch`` does).
"""

from __future__ import annotations

from megatron.core.models.gpt.gpt_layer_specs import (
    get_gpt_layer_local_spec,
    get_gpt_layer_with_transformer_engine_spec,
)
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import (
    TransformerBlockSubmodules,
    get_num_layers_to_build,
)

from megatron_biomed.config.model import NORMALIZATIONS
from megatron_biomed.kernels.modules import InverseLayerScaledAttention
from megatron_biomed.kernels.registry import KernelProvider, get_provider

__all__ = ["gpt_block_spec", "gpt_layer_spec", "gpt_model_spec", "norm_spec"]

Kernels = str | KernelProvider


def _check_normalization(normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization={normalization!r} must be one of {', '.join(NORMALIZATIONS)}")


def norm_spec(kernels: Kernels) -> ModuleSpec:
    """Spec of a norm built as ``spec(config=, hidden_size=, eps=)`` (LayerNorm or RMSNorm by
    ``config.normalization``) on ``kernels``."""
    return get_provider(kernels).norm()


def gpt_layer_spec(
    *,
    normalization: str = "LayerNorm",
    kernels: Kernels = "torch",
    qk_layernorm: bool = False,
    scale_attn_by_inverse_layer_idx: bool = False,
) -> ModuleSpec:
    """Layer spec for a GPT-2 (LayerNorm) or LLaMA (RMSNorm) style decoder layer.
    ``scale_attn_by_inverse_layer_idx``: GPT-2's per-layer softmax scale (ModelConfig field of that name)."""
    provider = get_provider(kernels)
    _check_normalization(normalization)
    if provider.fuse_layernorm_and_linear():  # Transformer Engine: the norms live inside the linears
        spec = get_gpt_layer_with_transformer_engine_spec(qk_layernorm=qk_layernorm)
        _scale_by_inverse_layer(spec, scale_attn_by_inverse_layer_idx)
        return spec
    # megatron-core's local layer (its MLP, linears and sharded-state-dict key map), with the provider's
    # norms and core attention; for "torch" these are the ones megatron-core picked already.
    spec = get_gpt_layer_local_spec(normalization=normalization, qk_layernorm=qk_layernorm)
    rms = normalization == "RMSNorm"
    sub = spec.submodules
    norm = provider.layer_norm(rms_norm=rms, has_residual=True)
    sub.input_layernorm = norm
    sub.pre_mlp_layernorm = norm
    attn = sub.self_attention.submodules
    attn.core_attention = provider.core_attention()
    if qk_layernorm:
        qk_norm = provider.layer_norm(rms_norm=rms, for_qk=True)
        attn.q_layernorm = qk_norm
        attn.k_layernorm = qk_norm
    _scale_by_inverse_layer(spec, scale_attn_by_inverse_layer_idx)
    return spec


def _scale_by_inverse_layer(spec: ModuleSpec, enabled: bool) -> None:
    if enabled:
        attn = spec.submodules.self_attention.submodules
        attn.core_attention = InverseLayerScaledAttention(attn.core_attention)


def _block(config, layer: ModuleSpec, final_norm, vp_stage: int | None, pp_rank: int | None):
    num_layers = get_num_layers_to_build(config, vp_stage=vp_stage, pp_rank=pp_rank)
    return TransformerBlockSubmodules(layer_specs=[layer] * num_layers, layer_norm=final_norm)


def gpt_block_spec(
    config,
    *,
    normalization: str = "LayerNorm",
    kernels: Kernels = "torch",
    qk_layernorm: bool = False,
    scale_attn_by_inverse_layer_idx: bool = False,
    vp_stage: int | None = None,
    pp_rank: int | None = None,
) -> TransformerBlockSubmodules:
    """Block spec (pass as GPTModel's ``transformer_layer_spec``): this pipeline stage's layers from
    :func:`gpt_layer_spec` plus the final norm on the same ``kernels``."""
    provider = get_provider(kernels)
    layer = gpt_layer_spec(
        normalization=normalization,
        kernels=provider,
        qk_layernorm=qk_layernorm,
        scale_attn_by_inverse_layer_idx=scale_attn_by_inverse_layer_idx,
    )
    return _block(config, layer, provider.norm(), vp_stage, pp_rank)


def gpt_model_spec(
    config,
    *,
    normalization: str = "LayerNorm",
    kernels: Kernels = "torch",
    qk_layernorm: bool = False,
    scale_attn_by_inverse_layer_idx: bool = False,
    vp_stage: int | None = None,
    pp_rank: int | None = None,
) -> ModuleSpec | TransformerBlockSubmodules:
    """GPTModel's ``transformer_layer_spec`` for this pipeline stage: :func:`gpt_block_spec`, or only the layer
    spec where the provider leaves the final norm to megatron-core (``final_norm()`` is None)."""
    provider = get_provider(kernels)
    options = dict(
        normalization=normalization, kernels=provider, qk_layernorm=qk_layernorm,
        scale_attn_by_inverse_layer_idx=scale_attn_by_inverse_layer_idx,
    )  # fmt: skip
    if provider.final_norm() is None:
        return gpt_layer_spec(**options)
    return gpt_block_spec(config, vp_stage=vp_stage, pp_rank=pp_rank, **options)
