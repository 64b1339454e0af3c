"""The one place that decides how a GPT transformer layer is built (megatron-core ModuleSpec).

``kernels`` picks the implementation of the norm, the softmax and the core attention:
``"torch"`` is megatron-core's local (pure PyTorch) spec and runs everywhere.
"""

from __future__ import annotations

from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.transformer.spec_utils import ModuleSpec

KERNEL_CHOICES = ("torch",)


def gpt_layer_spec(*, normalization: str = "LayerNorm", kernels: str = "torch", qk_layernorm: bool = False) -> ModuleSpec:
    """Layer spec for a GPT-2 (LayerNorm) or LLaMA (RMSNorm) style decoder layer."""
    if kernels not in KERNEL_CHOICES:
        raise ValueError(f"kernels={kernels!r} is not one of {KERNEL_CHOICES}")
    return get_gpt_layer_local_spec(normalization=normalization, qk_layernorm=qk_layernorm)
