"""GPT-2 (``GPT2LMHeadModel``: BioMedLM) <-> our ``gpt2`` family.

* HF ``Conv1D`` weights are ``[in, out]``; megatron-core linears are ``[out, in]``: transposed both ways.
* ``c_attn`` is ``[Q | K | V]`` along its output; megatron-core's fused ``linear_qkv`` is per head
  ``[q_h; k_h; v_h]`` (get_query_key_value_tensors with query groups = heads), so TP ranks hold whole heads.
* ``gelu_new`` is tanh GELU (our ``gelu_tanh``); ``scale_attn_by_inverse_layer_idx`` maps to the ModelConfig
  field of that name; the output layer is tied to the word embeddings.
"""

from __future__ import annotations

import torch

from megatron_biomed.config.model import ModelConfig
from megatron_biomed.convert.registry import WORD_EMBEDDINGS, ConversionError, HFAdapter, require

_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
_HF_ACTIVATION = {"gelu_tanh": "gelu_new", "gelu": "gelu"}


def qkv_to_megatron(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """``[Q; K; V]`` (dim 0, each ``heads * d`` rows; weight or bias) -> per-head ``[q_h; k_h; v_h]``."""
    rest = qkv.shape[1:]
    return qkv.reshape(3, heads, -1, *rest).transpose(0, 1).reshape(qkv.shape)


def qkv_from_megatron(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    rest = qkv.shape[1:]
    return qkv.reshape(heads, 3, -1, *rest).transpose(0, 1).reshape(qkv.shape)


class GPT2Adapter(HFAdapter):
    family = "gpt2"
    architectures = ("GPT2LMHeadModel",)
    model_type = "gpt2"
    ignored_hf_names = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers of older checkpoints

    config_class = "GPT2Config"
    config_defaults = {
        "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12, "n_inner": None,
        "activation_function": "gelu_new", "resid_pdrop": 0.1, "attn_pdrop": 0.1, "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02, "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
        "add_cross_attention": False, "tie_word_embeddings": True,
    }  # fmt: skip

    def model_config_from(self, hf: dict, where: str) -> ModelConfig:
        act = hf["activation_function"]
        require(act in _ACTIVATIONS, where, f"activation_function={act!r}: supported are {', '.join(_ACTIVATIONS)}")
        require(hf["scale_attn_weights"], where, "scale_attn_weights=false is not supported")
        require(hf["tie_word_embeddings"], where, "tie_word_embeddings=false: GPT-2 ties its output layer")
        require(not hf["add_cross_attention"], where, "add_cross_attention is not supported")
        return ModelConfig(
            family="gpt2",
            num_layers=hf["n_layer"],
            hidden_size=hf["n_embd"],
            num_attention_heads=hf["n_head"],
            ffn_hidden_size=hf["n_inner"],
            seq_length=hf["n_positions"],
            vocab_size=hf["vocab_size"],
            position_embedding_type="learned_absolute",
            normalization="LayerNorm",
            activation=_ACTIVATIONS[act],
            add_bias_linear=True,
            tie_embeddings=True,
            layernorm_epsilon=hf["layer_norm_epsilon"],
            scale_attn_by_inverse_layer_idx=bool(hf["scale_attn_by_inverse_layer_idx"]),
            hidden_dropout=hf["resid_pdrop"],
            attention_dropout=hf["attn_pdrop"],
            init_method_std=hf["initializer_range"],
        )

    def hf_config(self, m: ModelConfig, special_tokens: dict, dtype: str) -> dict:
        problems = [
            f"{name}={getattr(m, name)!r} (GPT-2 needs {want!r})"
            for name, want in (
                ("normalization", "LayerNorm"),
                ("position_embedding_type", "learned_absolute"),
                ("add_bias_linear", True),
                ("tie_embeddings", True),
            )
            if getattr(m, name) != want
        ]
        if m.activation not in _HF_ACTIVATION:
            problems.append(f"activation={m.activation!r} (GPT-2 has {', '.join(_HF_ACTIVATION)})")
        if m.kv_heads != m.num_attention_heads:
            problems.append(f"num_query_groups={m.num_query_groups} (GPT-2 has multi-head attention)")
        if problems:
            raise ConversionError("model config cannot be a GPT2LMHeadModel: " + "; ".join(problems))
        return {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "vocab_size": m.vocab_size,
            "n_positions": m.seq_length,
            "n_embd": m.hidden_size,
            "n_layer": m.num_layers,
            "n_head": m.num_attention_heads,
            "n_inner": m.ffn_hidden_size,
            "activation_function": _HF_ACTIVATION[m.activation],
            "resid_pdrop": m.hidden_dropout,
            "embd_pdrop": m.hidden_dropout,
            "attn_pdrop": m.attention_dropout,
            "layer_norm_epsilon": m.layernorm_epsilon,
            "initializer_range": m.init_method_std,
            "scale_attn_weights": True,
            "scale_attn_by_inverse_layer_idx": m.scale_attn_by_inverse_layer_idx,
            "reorder_and_upcast_attn": False,
            "tie_word_embeddings": True,
            "use_cache": True,
            "dtype": dtype,
            **special_tokens,
        }

    def global_names(self, m):
        return {
            WORD_EMBEDDINGS: "transformer.wte.weight",
            "embedding.position_embeddings.weight": "transformer.wpe.weight",
            "decoder.final_layernorm.weight": "transformer.ln_f.weight",
            "decoder.final_layernorm.bias": "transformer.ln_f.bias",
        }

    def layer_from_hf(self, m, i, read):
        h = f"transformer.h.{i}."
        heads = m.num_attention_heads
        return {
            "input_layernorm.weight": read(h + "ln_1.weight"),
            "input_layernorm.bias": read(h + "ln_1.bias"),
            "self_attention.linear_qkv.weight": qkv_to_megatron(read(h + "attn.c_attn.weight").t(), heads),
            "self_attention.linear_qkv.bias": qkv_to_megatron(read(h + "attn.c_attn.bias"), heads),
            "self_attention.linear_proj.weight": read(h + "attn.c_proj.weight").t(),
            "self_attention.linear_proj.bias": read(h + "attn.c_proj.bias"),
            "pre_mlp_layernorm.weight": read(h + "ln_2.weight"),
            "pre_mlp_layernorm.bias": read(h + "ln_2.bias"),
            "mlp.linear_fc1.weight": read(h + "mlp.c_fc.weight").t(),
            "mlp.linear_fc1.bias": read(h + "mlp.c_fc.bias"),
            "mlp.linear_fc2.weight": read(h + "mlp.c_proj.weight").t(),
            "mlp.linear_fc2.bias": read(h + "mlp.c_proj.bias"),
        }

    def layer_to_hf(self, m, i, ours):
        h = f"transformer.h.{i}."
        heads = m.num_attention_heads
        return {
            h + "ln_1.weight": ours["input_layernorm.weight"],
            h + "ln_1.bias": ours["input_layernorm.bias"],
            h + "attn.c_attn.weight": qkv_from_megatron(ours["self_attention.linear_qkv.weight"], heads).t(),
            h + "attn.c_attn.bias": qkv_from_megatron(ours["self_attention.linear_qkv.bias"], heads),
            h + "attn.c_proj.weight": ours["self_attention.linear_proj.weight"].t(),
            h + "attn.c_proj.bias": ours["self_attention.linear_proj.bias"],
            h + "ln_2.weight": ours["pre_mlp_layernorm.weight"],
            h + "ln_2.bias": ours["pre_mlp_layernorm.bias"],
            h + "mlp.c_fc.weight": ours["mlp.linear_fc1.weight"].t(),
            h + "mlp.c_fc.bias": ours["mlp.linear_fc1.bias"],
            h + "mlp.c_proj.weight": ours["mlp.linear_fc2.weight"].t(),
            h + "mlp.c_proj.bias": ours["mlp.linear_fc2.bias"],
        }


ADAPTER = GPT2Adapter()
