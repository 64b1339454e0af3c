"""Which of megatron-core's fusions a run turns on: one decision per TransformerConfig flag, with the reason for
each one left off (models/common.py ``transformer_config`` applies and logs it).

What each flag needs in megatron-core 0.19 (read from its sources):

* ``bias_activation_fusion``, ``bias_dropout_fusion``, ``cross_entropy_loss_fusion`` (native) -- megatron's
  ``jit_fuser`` functions (megatron/core/fusions), which are ``torch.compile``'d: a GPU with Triton. The fused
  bias-GELU is GPT-2's tanh approximation (``gelu_tanh``), needs the linear bias, and megatron's config check
  wants ``F.gelu`` as the activation; SwiGLU is fused with or without a bias; the erf GELU is never fused (it would
  change the model).
* ``gradient_accumulation_fusion`` -- Apex's ``fused_weight_gradient_mlp_cuda`` (every ColumnParallelLinear
  refuses to build without it, the output layer included, whatever the kernels choice).
* ``masked_softmax_fusion`` -- the fused softmax extensions (``scaled_masked_softmax_cuda`` ..., from Apex's
  ``--cuda_ext`` build), imported at the first fused call; only megatron-core's own attention (``kernels="torch"``)
  uses them.
* ``apply_rope_fusion`` -- Transformer Engine's fused RoPE (megatron's config check refuses it otherwise).
* ``persist_layer_norm`` -- only Apex's FusedLayerNorm has the persistent kernel; megatron's torch norm refuses the
  flag and our norm module has no such variant: always off.

The decision is a pure function of the model config and :class:`FusionProbes` (what this machine has), so it is
tested on CPU with any machine faked.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from megatron_biomed.config.model import ModelConfig

__all__ = ["FUSION_FLAGS", "FusionChoice", "FusionProbes", "decide_fusions", "probe_fusions"]

# The TransformerConfig flags decided here, in the order they are logged.
FUSION_FLAGS = (
    "bias_activation_fusion",
    "bias_dropout_fusion",
    "masked_softmax_fusion",
    "apply_rope_fusion",
    "cross_entropy_loss_fusion",
    "gradient_accumulation_fusion",
    "persist_layer_norm",
)


@dataclass(frozen=True)
class FusionProbes:
    """What megatron-core's fused ops need, as present on this machine."""

    gpu: bool  # a CUDA device
    triton: bool  # torch.compile's GPU backend (megatron's jit_fuser ops)
    apex_grad_accum: bool  # Apex's fused_weight_gradient_mlp_cuda
    megatron_softmax: bool  # megatron's fused softmax extensions
    te_rope: bool  # Transformer Engine's fused RoPE


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@functools.cache
def probe_fusions() -> FusionProbes:
    """What this machine has (asked once per process; nothing is imported but Transformer Engine's RoPE)."""
    te_rope = False
    if _importable("transformer_engine"):
        from megatron.core.models.common.embeddings import rope_utils  # imports TE's fused RoPE where present

        te_rope = getattr(rope_utils, "fused_apply_rotary_pos_emb", None) is not None
    return FusionProbes(
        gpu=torch.cuda.is_available(),
        triton=_importable("triton"),
        apex_grad_accum=_importable("fused_weight_gradient_mlp_cuda"),
        megatron_softmax=all(
            _importable(m)
            for m in ("scaled_upper_triang_masked_softmax_cuda", "scaled_masked_softmax_cuda", "scaled_softmax_cuda")
        ),
        te_rope=te_rope,
    )


@dataclass(frozen=True)
class FusionChoice:
    """The fusion flags of a run's TransformerConfig, the reason each one left off is off, and the activation
    function megatron-core is given (the fused bias-GELU needs ``F.gelu`` there; see the module docstring)."""

    flags: dict[str, bool]
    off: dict[str, str] = field(default_factory=dict)
    activation_func: Callable | None = None  # None: the model's own (models/common.py)

    def describe(self) -> str:
        on = [f for f in FUSION_FLAGS if self.flags[f]]
        off = "; ".join(f"{f}: {self.off[f]}" for f in FUSION_FLAGS if not self.flags[f])
        return f"megatron-core fusions on: {', '.join(on) or 'none'}" + (f"; off: {off}" if off else "")


def decide_fusions(m: ModelConfig, probes: FusionProbes) -> FusionChoice:
    """The fusion flags for model ``m`` on a machine with ``probes``."""
    off: dict[str, str] = {}
    activation_func = None
    if not probes.gpu:
        off = {f: "no GPU (the fused ops are CUDA kernels or compiled for a GPU)" for f in FUSION_FLAGS}
        return FusionChoice({f: False for f in FUSION_FLAGS}, off)
    no_triton = "needs Triton (megatron-core's fused ops are torch.compile'd for the GPU)"
    if not probes.triton:
        off["bias_activation_fusion"] = off["bias_dropout_fusion"] = off["cross_entropy_loss_fusion"] = no_triton
    elif m.activation == "gelu":
        off["bias_activation_fusion"] = (
            "megatron-core's fused bias-GELU is the tanh approximation; model.activation='gelu' is the erf GELU"
        )
    elif m.activation == "gelu_tanh":
        if m.add_bias_linear:
            activation_func = F.gelu  # megatron's check wants F.gelu; its fused bias-GELU is exactly the tanh form
        else:
            off["bias_activation_fusion"] = "the fused bias-GELU needs the linear bias (model.add_bias_linear)"
    if not probes.megatron_softmax:
        off["masked_softmax_fusion"] = (
            "needs the fused softmax extensions (scaled_masked_softmax_cuda, Apex's --cuda_ext build); "
            "only kernels='torch' uses them"
        )
    if m.position_embedding_type != "rope":
        off["apply_rope_fusion"] = "the model has no RoPE"
    elif not probes.te_rope:
        off["apply_rope_fusion"] = "needs Transformer Engine's fused RoPE (TE >= 1.4)"
    if not probes.apex_grad_accum:
        off["gradient_accumulation_fusion"] = "needs Apex's fused_weight_gradient_mlp_cuda (Apex built with --cuda_ext)"
    off["persist_layer_norm"] = (
        "only Apex's FusedLayerNorm has it; megatron's torch norm refuses it and ours has no such kernel"
    )
    return FusionChoice({f: f not in off for f in FUSION_FLAGS}, off, activation_func)
