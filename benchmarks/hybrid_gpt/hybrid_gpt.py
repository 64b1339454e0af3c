"""Prototype (issue 16, not part of the library): the gpt2 and llama families built on megatron-core's
``HybridModel`` instead of the deprecated ``GPTModel``.

A GPT layer becomes two HybridStack layers, attention ``*`` then MLP ``-``: the pattern is ``"*-" * num_layers``
cut with ``|`` into one segment per (virtual) pipeline stage, as models/mamba/family.py does for ``"M"``.

* The attention layer is a ``TransformerLayer`` holding today's input norm, self-attention (linears, our
  provider's core attention, the GPT-2 per-layer scale) and residual; the MLP layer is megatron-core's
  ``MLPLayer`` with today's pre-MLP norm, MLP and residual. Both come from models/gpt/specs.py's
  ``gpt_layer_spec``, so the ``kernels`` providers (torch / csrc / emu / te) carry over unchanged.
* ``scale_attn_by_inverse_layer_idx``: HybridStack numbers every layer (attention layer of GPT layer k is
  hybrid layer 2k+1), so the scale must come from the attention ordinal in the pattern, not from
  ``layer_number`` (:class:`PatternInverseLayerScaledAttention`).
* HybridStack builds its final norm with Transformer Engine's ``TENorm`` (hybrid_block.py:215, ImportError without
  TE); :class:`GPTHybridStack` builds the provider's norm instead (LayerNorm for gpt2, RMSNorm for llama).
* ``gpt_layout=True``: the sharded state dict uses GPTModel's keys (layers stacked on a leading axis,
  ``decoder.final_layernorm``), so checkpoints written by today's GPTModel load unchanged and the
  checkpoint format does not change. ``gpt_layout=False``: HybridStack's own keys (``decoder.layers.<i>.``, one
  entry per hybrid layer, ``decoder.final_norm``).
"""

from __future__ import annotations

import copy

import torch
from megatron.core import parallel_state as ps
from megatron.core.dist_checkpointing.utils import replace_prefix_for_sharding
from megatron.core.models.hybrid.hybrid_block import HybridStack, HybridStackSubmodules
from megatron.core.ssm.mlp_layer import MLPLayer
from megatron.core.transformer.spec_utils import ModuleSpec, build_module
from megatron.core.transformer.transformer_layer import TransformerLayer, TransformerLayerSubmodules
from megatron.core.transformer.utils import sharded_state_dict_default

from megatron_biomed.kernels.modules import InverseLayerScaledAttention
from megatron_biomed.kernels.registry import get_provider
from megatron_biomed.models.common import run_facts, transformer_config
from megatron_biomed.models.gpt.specs import gpt_layer_spec
from megatron_biomed.models.mamba.model import MambaLM

ATTENTION, MLP, PIPE = "*", "-", "|"


def gpt_pattern(num_layers: int, segments: int = 1) -> str:
    """``"*-" * num_layers`` cut into ``segments`` equal pipeline segments."""
    if num_layers % segments:
        raise ValueError(f"{segments} pipeline segments must divide num_layers ({num_layers})")
    return PIPE.join([(ATTENTION + MLP) * (num_layers // segments)] * segments)


def transformer_index(pattern: str) -> dict[int, int]:
    """Hybrid layer number (1-based, as HybridStack numbers them) -> index of the GPT layer it belongs to
    (an attention layer starts a GPT layer; the MLP after it belongs to the same one)."""
    flat = pattern.replace(PIPE, "")
    out, k = {}, -1
    for i, symbol in enumerate(flat):
        if symbol == ATTENTION:
            k += 1
        out[i + 1] = k
    return out


class PatternInverseLayerScaledAttention(InverseLayerScaledAttention):
    """GPT-2's ``1 / (sqrt(d) * (layer_idx + 1))`` with layer_idx the GPT layer (attention ordinal in the
    pattern), not HybridStack's layer number, which also counts the MLP layers."""

    def __init__(self, inner, pattern: str) -> None:
        super().__init__(inner)
        self.index = transformer_index(pattern)

    def __call__(self, *, config, layer_number: int, softmax_scale: float | None = None, **kwargs):
        base = softmax_scale if softmax_scale is not None else config.kv_channels**-0.5
        scale = base / (self.index[layer_number] + 1)
        return self.inner(config=config, layer_number=layer_number, softmax_scale=scale, **kwargs)


class GPTHybridStack(HybridStack):
    """HybridStack with the provider's final norm (not TENorm) and, with ``gpt_layout``, GPTModel's names: in the
    sharded state dict (checkpoint keys and shapes) and in the plain state dict (``decoder.layers.<k>.mlp...``,
    ``decoder.final_layernorm``), so checkpoints, HF conversion and anything reading names see a GPTModel."""

    def __init__(self, config, submodules, *args, final_norm: ModuleSpec, pattern: str, gpt_layout: bool = True,
                 gpt_recompute_units: bool = True, post_layer_norm: bool = True, **kwargs):  # fmt: skip
        super().__init__(config, submodules, *args, post_layer_norm=False, **kwargs)
        if gpt_recompute_units and config.recompute_granularity == "full":
            # megatron-core's full recompute counts the block's layers (recompute.py: recompute_num_layers of
            # num_layers_per_pipeline_rank), and a GPT layer is two HybridStack layers here; the run's setting
            # (and the planner's, parallel/layout.py's) counts GPT layers. Only this stack reads the field, so it
            # gets its own copy of the config: the shared one keeps the run's meaning.
            per_gpt_layer = len(pattern.replace(PIPE, "")) // pattern.count(ATTENTION)
            self.config = copy.copy(config)  # a shallow copy: TransformerConfig.__post_init__ is not run again
            self.config.recompute_num_layers = config.recompute_num_layers * per_gpt_layer
        self.post_layer_norm = post_layer_norm
        self.gpt_layout = gpt_layout
        self.index = transformer_index(pattern)
        self.num_transformer_layers = pattern.count(ATTENTION)
        if self.post_process and post_layer_norm:
            self.final_norm = build_module(
                final_norm, config=self.config, hidden_size=self.config.hidden_size, eps=self.config.layernorm_epsilon
            )
        if gpt_layout:
            self._register_state_dict_hook(_to_gpt_names)
            self.register_load_state_dict_pre_hook(_from_gpt_names)

    def gpt_local_index(self, local: int) -> int:
        """This chunk's GPT-layer index (as GPTModel's TransformerBlock numbers them) of hybrid layer ``local``."""
        first = self.index[self.layers[0].layer_number]
        return self.index[self.layers[local].layer_number] - first

    def gpt_names(self, prefix: str) -> dict[str, str]:
        """Hybrid name prefix -> GPT name prefix, for this module's children."""
        out = {f"{prefix}layers.{j}.": f"{prefix}layers.{self.gpt_local_index(j)}." for j in range(len(self.layers))}
        out[f"{prefix}final_norm."] = f"{prefix}final_layernorm."
        return out

    def sharded_state_dict(self, prefix: str = "", sharded_offsets=None, metadata=None):
        if not self.gpt_layout:
            return super().sharded_state_dict(prefix, sharded_offsets, metadata)
        # What TransformerBlock.sharded_state_dict writes (homogeneous layers): every layer's tensors under
        # ``layers.<name>`` with a leading layer axis; the attention and MLP halves of GPT layer k at index k.
        out = {}
        names = self.gpt_names(prefix)
        for local, layer in enumerate(self.layers):
            k = self.index[layer.layer_number]
            local_prefix = f"{prefix}layers.{local}."
            sd = layer.sharded_state_dict(local_prefix, [(0, k, self.num_transformer_layers)], metadata)
            replace_prefix_for_sharding(sd, local_prefix, f"{prefix}layers.")
            out.update({names[local_prefix] + n[len(local_prefix) :]: v for n, v in sd.items()})
        for name, module in self.named_children():
            if module is self.layers:
                continue
            theirs = names.get(f"{prefix}{name}.", f"{prefix}{name}.")
            sd = sharded_state_dict_default(module, f"{prefix}{name}.", sharded_offsets, metadata,
                                            tp_group=self.tp_group)  # fmt: skip
            replace_prefix_for_sharding(sd, f"{prefix}{name}.", theirs)
            out.update({theirs + n[len(f"{prefix}{name}.") :]: v for n, v in sd.items()})
        return out


def _to_gpt_names(module: GPTHybridStack, state_dict, prefix, local_metadata) -> None:
    """state_dict hook: this stack's entries under GPTModel's names."""
    names = module.gpt_names(prefix)
    renamed = {}
    for key in [k for k in state_dict if k.startswith(prefix)]:
        for ours, theirs in names.items():
            if key.startswith(ours):
                renamed[theirs + key[len(ours) :]] = state_dict.pop(key)
                break
    state_dict.update(renamed)  # after every pop: old and new names overlap (hybrid layers.1 is GPT layers.0)


def _from_gpt_names(module: GPTHybridStack, state_dict, prefix, local_metadata, strict, missing, unexpected,
                    error_msgs) -> None:  # fmt: skip
    """load_state_dict pre-hook: GPTModel's names back to this stack's (each GPT layer's tensors to the hybrid
    layer that owns their suffix)."""
    owner = {}  # (GPT-layer prefix, suffix) -> hybrid layer prefix
    for j, layer in enumerate(module.layers):
        gpt = f"{prefix}layers.{module.gpt_local_index(j)}."
        for suffix in layer.state_dict():
            owner[(gpt, suffix)] = f"{prefix}layers.{j}."
    gpt_prefixes = {g for g, _ in owner}
    renamed = {}
    for key in [k for k in state_dict if k.startswith(prefix)]:
        if key.startswith(f"{prefix}final_layernorm."):
            renamed[f"{prefix}final_norm." + key[len(f"{prefix}final_layernorm.") :]] = state_dict.pop(key)
            continue
        for gpt in gpt_prefixes:
            if key.startswith(gpt) and (gpt, key[len(gpt) :]) in owner:
                renamed[owner[(gpt, key[len(gpt) :])] + key[len(gpt) :]] = state_dict.pop(key)
                break
    state_dict.update(renamed)  # after every pop: old and new names overlap


class HybridGPT(MambaLM):
    """MambaLM (HybridModel + output_processor hook + real-vocabulary loss) that, like GPTModel, leaves the output
    layer's empty ``_extra_state`` out of the checkpoint (GPTModel.sharded_state_dict does; old checkpoints lack it)."""

    def sharded_state_dict(self, prefix: str = "", sharded_offsets: tuple = (), metadata=None):
        sd = super().sharded_state_dict(prefix, sharded_offsets, metadata)
        extra = sd.pop(f"{prefix}output_layer._extra_state", None)
        assert not (extra and extra.data), extra
        return sd


def hybrid_gpt_stack_spec(cfg, pattern: str, provider=None, *, gpt_layout: bool = True,
                          pattern_scale: bool = True, gpt_recompute_units: bool = True) -> ModuleSpec:  # fmt: skip
    """The HybridStack spec of a gpt2 / llama model: today's layer spec split into an attention and an MLP layer.
    ``pattern_scale=False`` keeps today's InverseLayerScaledAttention (scales by hybrid layer number: wrong)."""
    m = cfg.model
    provider = get_provider(provider if provider is not None else m.kernels, run_facts(cfg))
    layer = gpt_layer_spec(normalization=m.normalization, kernels=provider, scale_attn_by_inverse_layer_idx=False)
    sub = layer.submodules
    self_attention = copy.copy(sub.self_attention)
    self_attention.submodules = copy.copy(sub.self_attention.submodules)
    if m.scale_attn_by_inverse_layer_idx:
        inner = self_attention.submodules.core_attention
        self_attention.submodules.core_attention = (
            PatternInverseLayerScaledAttention(inner, pattern) if pattern_scale else InverseLayerScaledAttention(inner)
        )
    keys = dict(sub.sharded_state_dict_keys_map)  # the local spec stores norms under TE's fused names
    attn_keys = {k: v for k, v in keys.items() if k.startswith("input_layernorm")}
    mlp_keys = {k: v for k, v in keys.items() if k.startswith("pre_mlp_layernorm")}
    attention_layer = ModuleSpec(
        module=TransformerLayer,
        submodules=TransformerLayerSubmodules(
            input_layernorm=sub.input_layernorm, self_attention=self_attention, self_attn_bda=sub.self_attn_bda,
            sharded_state_dict_keys_map=attn_keys,
        ),
    )  # fmt: skip
    mlp_layer = ModuleSpec(
        module=MLPLayer,
        submodules=TransformerLayerSubmodules(
            pre_mlp_layernorm=sub.pre_mlp_layernorm, mlp=sub.mlp, mlp_bda=sub.mlp_bda,
            sharded_state_dict_keys_map=mlp_keys,
        ),
    )  # fmt: skip
    return ModuleSpec(
        module=GPTHybridStack,
        params={
            "final_norm": provider.norm(),
            "pattern": pattern,
            "gpt_layout": gpt_layout,
            "gpt_recompute_units": gpt_recompute_units,
        },
        submodules=HybridStackSubmodules(attention_layer=attention_layer, mlp_layer=mlp_layer),
    )


def build_hybrid_gpt_chunks(cfg, tconfig=None, *, gpt_layout: bool = True, pattern_scale: bool = True,
                            provider=None, gpt_recompute_units: bool = True) -> list:  # fmt: skip
    """The HybridGPT chunks this rank holds (one per virtual pipeline stage): models/gpt/family.py's
    build_gpt_model_chunks on HybridModel. ``tconfig.num_layers`` stays the GPT layer count (megatron-core scales
    the output-projection init by it). ``gpt_recompute_units=False`` leaves recompute_num_layers as given
    (counted in hybrid layers: half the recomputation; see GPTHybridStack)."""
    m, p = cfg.model, cfg.parallel
    tconfig = tconfig or transformer_config(cfg)
    vpp = p.virtual_pipeline_model_parallel_size
    pattern = gpt_pattern(m.num_layers, p.pipeline_model_parallel_size * (vpp or 1))
    spec = hybrid_gpt_stack_spec(
        cfg,
        pattern,
        provider,
        gpt_layout=gpt_layout,
        pattern_scale=pattern_scale,
        gpt_recompute_units=gpt_recompute_units,
    )
    chunks = []
    for stage in range(vpp or 1):
        vp_stage = stage if vpp else None
        model = HybridGPT(
            config=tconfig,
            hybrid_stack_spec=spec,
            vocab_size=m.padded_vocab_size(p.tensor_model_parallel_size),
            max_sequence_length=m.seq_length,
            hybrid_layer_pattern=pattern,
            pre_process=ps.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage),
            post_process=ps.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage),
            share_embeddings_and_output_weights=m.tie_embeddings,
            position_embedding_type=m.position_embedding_type,
            rotary_base=m.rotary_base,
            vp_stage=vp_stage,
        )
        model.real_vocab_size = m.vocab_size
        if torch.cuda.is_available():
            model.cuda(torch.cuda.current_device())
        if tconfig.bf16 or tconfig.fp16:
            from megatron.core.transformer.module import Float16Module

            model = Float16Module(tconfig, model)
        chunks.append(model)
    return chunks


def gpt_to_hybrid_name(name: str, hybrid_final_norm: str = "final_norm") -> str:
    """A GPTModel (unsharded) state-dict name -> the HybridGPT name of the same tensor."""
    if name.startswith("decoder.final_layernorm."):
        return name.replace("decoder.final_layernorm.", f"decoder.{hybrid_final_norm}.", 1)
    if not name.startswith("decoder.layers."):
        return name
    rest = name[len("decoder.layers.") :]
    k, suffix = rest.split(".", 1)
    half = 0 if suffix.startswith(("input_layernorm.", "self_attention.", "self_attn_bda")) else 1
    return f"decoder.layers.{2 * int(k) + half}.{suffix}"


def copy_gpt_weights(gpt, hybrid) -> list[str]:
    """Load ``gpt``'s (local, this rank's) state dict into ``hybrid``; returns unmatched names. A GPT-layout
    HybridGPT takes GPTModel's names as they are; HybridStack's own layout by :func:`gpt_to_hybrid_name`."""
    src = gpt.state_dict()
    if not hybrid.decoder.gpt_layout:
        src = {gpt_to_hybrid_name(k): v for k, v in src.items()}
    missing, unexpected = hybrid.load_state_dict(src, strict=False)
    return [n for n in list(missing) + list(unexpected) if not n.endswith("_extra_state")]
