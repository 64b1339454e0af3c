"""LLaMA (``LlamaForCausalLM``: BioLLM-70B's base) <-> our ``llama`` family.

* Grouped-query attention: megatron-core's fused ``linear_qkv`` is interleaved per query group,
  ``[q x (heads / groups); k; v]`` for each group, as get_query_key_value_tensors splits it; TP ranks
  hold whole groups.
* SwiGLU: our unsharded ``linear_fc1`` is ``[gate; up]``. (megatron-core's sharded state dict stores it so
  and gives TP rank r ``[gate_r; up_r]`` when a layout loads it, so nothing here depends on TP.)
* RMSNorm epsilon, rope theta and untied embeddings come from config.json; HF and megatron-core both rotate
  halves (non-interleaved RoPE), so q/k need no permutation.
"""

from __future__ import annotations

import torch

from megatron_biomed.config.model import ModelConfig
from megatron_biomed.convert.registry import (
    OUTPUT_LAYER,
    WORD_EMBEDDINGS,
    ConversionError,
    HFAdapter,
    require,
)


def rope_parameters(hf: dict) -> dict:
    """RoPE settings of an HF config: ``rope_parameters`` (transformers 5, which also moves older configs'
    ``rope_theta`` / ``rope_scaling`` there when it reads them), else those older fields (a config read
    without transformers)."""
    if hf.get("rope_parameters"):
        return hf["rope_parameters"]
    params = dict(hf.get("rope_scaling") or {})
    if "type" in params:
        params.setdefault("rope_type", params["type"])
    if "rope_theta" in hf:
        params["rope_theta"] = hf["rope_theta"]
    return params


def rope_theta(hf: dict) -> float:
    """rope theta of an HF config (10,000 when it names none, as LlamaConfig)."""
    return float(rope_parameters(hf).get("rope_theta", 10000.0))


def qkv_to_megatron(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, groups: int) -> torch.Tensor:
    """HF q/k/v projections (weights ``[n * d, hidden]`` or biases) -> fused per-group ``linear_qkv``."""
    rest = q.shape[1:]
    d = q.shape[0] // heads
    per = heads // groups
    fused = torch.cat(
        [q.reshape(groups, per * d, *rest), k.reshape(groups, d, *rest), v.reshape(groups, d, *rest)], dim=1
    )
    return fused.reshape(-1, *rest)


def qkv_from_megatron(qkv: torch.Tensor, heads: int, groups: int):
    rest = qkv.shape[1:]
    d = qkv.shape[0] // (heads + 2 * groups)
    per = heads // groups
    g = qkv.reshape(groups, (per + 2) * d, *rest)
    q, k, v = torch.split(g, [per * d, d, d], dim=1)
    return q.reshape(heads * d, *rest), k.reshape(groups * d, *rest), v.reshape(groups * d, *rest)


class LlamaAdapter(HFAdapter):
    family = "llama"
    architectures = ("LlamaForCausalLM",)
    model_type = "llama"
    ignored_hf_names = (".rotary_emb.inv_freq",)

    config_class = "LlamaConfig"
    # head_dim and num_key_value_heads: None means hidden_size / heads and heads, as LlamaConfig derives them.
    config_defaults = {
        "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": None, "head_dim": None, "hidden_act": "silu",
        "max_position_embeddings": 2048, "initializer_range": 0.02, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False, "rope_parameters": None, "attention_bias": False, "attention_dropout": 0.0,
        "mlp_bias": False,
    }  # fmt: skip

    def model_config_from(self, hf: dict, where: str) -> ModelConfig:
        require(hf["hidden_act"] == "silu", where, f"hidden_act={hf['hidden_act']!r}: only silu")
        require(not hf["attention_bias"], where, "attention_bias=true is not supported")
        require(not hf["mlp_bias"], where, "mlp_bias=true is not supported")
        rope_type = rope_parameters(hf).get("rope_type", "default")
        require(rope_type == "default", where, f"rope type {rope_type!r}: only unscaled RoPE is supported")
        heads, hidden = hf["num_attention_heads"], hf["hidden_size"]
        head_dim = hf["head_dim"] or hidden // heads
        require(head_dim * heads == hidden, where, f"head_dim={head_dim} x heads {heads} != hidden_size {hidden}")
        theta = rope_theta(hf)
        require(theta.is_integer(), where, f"rope_theta={theta} must be a whole number (model.rotary_base)")
        return ModelConfig(
            family="llama",
            num_layers=hf["num_hidden_layers"],
            hidden_size=hidden,
            num_attention_heads=heads,
            num_query_groups=hf["num_key_value_heads"] or heads,
            ffn_hidden_size=hf["intermediate_size"],
            seq_length=hf["max_position_embeddings"],
            vocab_size=hf["vocab_size"],
            position_embedding_type="rope",
            rotary_base=int(theta),
            normalization="RMSNorm",
            activation="swiglu",
            add_bias_linear=False,
            tie_embeddings=bool(hf["tie_word_embeddings"]),
            layernorm_epsilon=hf["rms_norm_eps"],
            hidden_dropout=0.0,
            attention_dropout=hf["attention_dropout"],
            init_method_std=hf["initializer_range"],
        )

    def hf_config(self, m: ModelConfig, special_tokens: dict, dtype: str) -> dict:
        problems = [
            f"{name}={getattr(m, name)!r} (LLaMA needs {want!r})"
            for name, want in (
                ("normalization", "RMSNorm"),
                ("position_embedding_type", "rope"),
                ("activation", "swiglu"),
                ("add_bias_linear", False),
                ("scale_attn_by_inverse_layer_idx", False),
            )
            if getattr(m, name) != want
        ]
        if problems:
            raise ConversionError("model config cannot be a LlamaForCausalLM: " + "; ".join(problems))
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": m.vocab_size,
            "hidden_size": m.hidden_size,
            "intermediate_size": m.ffn_size,
            "num_hidden_layers": m.num_layers,
            "num_attention_heads": m.num_attention_heads,
            "num_key_value_heads": m.kv_heads,
            "head_dim": m.hidden_size // m.num_attention_heads,
            "max_position_embeddings": m.seq_length,
            "rms_norm_eps": m.layernorm_epsilon,
            "rope_theta": float(m.rotary_base),
            "rope_parameters": {"rope_type": "default", "rope_theta": float(m.rotary_base)},
            "hidden_act": "silu",
            "attention_bias": False,
            "mlp_bias": False,
            "attention_dropout": m.attention_dropout,
            "initializer_range": m.init_method_std,
            "tie_word_embeddings": m.tie_embeddings,
            "use_cache": True,
            "dtype": dtype,
            **special_tokens,
        }

    def global_names(self, m):
        names = {WORD_EMBEDDINGS: "model.embed_tokens.weight", "decoder.final_layernorm.weight": "model.norm.weight"}
        if not m.tie_embeddings:
            names[OUTPUT_LAYER] = "lm_head.weight"
        return names

    def layer_from_hf(self, m, i, read):
        h = f"model.layers.{i}."
        a = h + "self_attn."
        qkv = qkv_to_megatron(
            read(a + "q_proj.weight"), read(a + "k_proj.weight"), read(a + "v_proj.weight"),
            m.num_attention_heads, m.kv_heads,
        )  # fmt: skip
        return {
            "input_layernorm.weight": read(h + "input_layernorm.weight"),
            "self_attention.linear_qkv.weight": qkv,
            "self_attention.linear_proj.weight": read(a + "o_proj.weight"),
            "pre_mlp_layernorm.weight": read(h + "post_attention_layernorm.weight"),
            "mlp.linear_fc1.weight": torch.cat([read(h + "mlp.gate_proj.weight"), read(h + "mlp.up_proj.weight")]),
            "mlp.linear_fc2.weight": read(h + "mlp.down_proj.weight"),
        }

    def layer_to_hf(self, m, i, ours):
        h = f"model.layers.{i}."
        a = h + "self_attn."
        q, k, v = qkv_from_megatron(ours["self_attention.linear_qkv.weight"], m.num_attention_heads, m.kv_heads)
        gate, up = torch.chunk(ours["mlp.linear_fc1.weight"], 2, dim=0)
        return {
            h + "input_layernorm.weight": ours["input_layernorm.weight"],
            a + "q_proj.weight": q,
            a + "k_proj.weight": k,
            a + "v_proj.weight": v,
            a + "o_proj.weight": ours["self_attention.linear_proj.weight"],
            h + "post_attention_layernorm.weight": ours["pre_mlp_layernorm.weight"],
            h + "mlp.gate_proj.weight": gate,
            h + "mlp.up_proj.weight": up,
            h + "mlp.down_proj.weight": ours["mlp.linear_fc2.weight"],
        }


ADAPTER = LlamaAdapter()
