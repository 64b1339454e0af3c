"""transformers' ``Mamba2ForCausalLM`` (and the state-spaces/mamba2-* ``mamba_ssm`` weights) <-> our ``mamba2`` family.

* The tensors keep their names and layouts: in_proj's rows ``[z | x | B | C | dt]``, conv1d ``[x | B | C]`` with
  shape ``[conv_dim, 1, kernel]``, per-head dt_bias / A_log / D, the gated norm, out_proj. Only prefixes move:
  HF ``backbone.layers.{i}.mixer.conv1d.weight`` is our ``decoder.layers.{i}.mixer.conv1d_weight`` (megatron-core
  0.19.2's MambaMixer holds the conv as plain parameters), ``backbone.layers.{i}.norm`` is the layer's pre-norm,
  ``backbone.norm_f`` the final norm, the output layer is tied.
* ``mamba_ssm`` checkpoints name the embedding ``backbone.embedding.weight`` (HF renames it to
  ``backbone.embeddings.weight`` on load); both are read. Their ``config.json`` (``d_model``, ``n_layer``,
  ``ssm_cfg``) is not an HF config: :meth:`Mamba2Adapter.from_native_config` recognises it (tools/convert_hf.py
  import reads it directly) and :func:`hf_config_from_mamba_ssm` gives the equivalent HF one.
"""

from __future__ import annotations

import math

from megatron_biomed.config.model import ModelConfig
from megatron_biomed.convert.registry import WORD_EMBEDDINGS, HFAdapter, require

# Our mixer suffix -> HF's (under decoder.layers.{i}. and backbone.layers.{i}.)
_LAYER = (
    ("norm.weight", "norm.weight"),
    ("mixer.in_proj.weight", "mixer.in_proj.weight"),
    ("mixer.conv1d_weight", "mixer.conv1d.weight"),
    ("mixer.conv1d_bias", "mixer.conv1d.bias"),
    ("mixer.dt_bias", "mixer.dt_bias"),
    ("mixer.A_log", "mixer.A_log"),
    ("mixer.D", "mixer.D"),
    ("mixer.norm.weight", "mixer.norm.weight"),
    ("mixer.out_proj.weight", "mixer.out_proj.weight"),
)
FINAL_NORM = "decoder.final_norm.weight"


def hf_config_from_mamba_ssm(config: dict, where: str = "config.json") -> dict:
    """The ``Mamba2ForCausalLM`` config.json of a ``mamba_ssm`` MambaLMHeadModel config (state-spaces/mamba2-*):
    Mamba2 module defaults (state 128, head dim 64, expand 2, conv 4, chunk 256, ngroups 1) unless ``ssm_cfg``
    says otherwise; the vocabulary padded to ``pad_vocab_size_multiple`` as the stored embedding is."""
    ssm = dict(config.get("ssm_cfg") or {})
    require(ssm.get("layer", "Mamba2") == "Mamba2", where, f"ssm_cfg.layer={ssm.get('layer')!r}: only Mamba2")
    require(not config.get("attn_layer_idx"), where, "attn_layer_idx: hybrid attention layers are not supported")
    require(config.get("d_intermediate", 0) == 0, where, "d_intermediate > 0 (MLP layers) is not supported")
    require(config.get("rms_norm", True), where, "rms_norm=false is not supported")
    d_model, expand, head_dim = config["d_model"], ssm.get("expand", 2), ssm.get("headdim", 64)
    multiple = config.get("pad_vocab_size_multiple", 16)
    vocab = math.ceil(config["vocab_size"] / multiple) * multiple
    return {
        "architectures": ["Mamba2ForCausalLM"], "model_type": "mamba2", "hidden_size": d_model,
        "num_hidden_layers": config["n_layer"], "vocab_size": vocab, "state_size": ssm.get("d_state", 128),
        "expand": expand, "head_dim": head_dim, "num_heads": expand * d_model // head_dim,
        "n_groups": ssm.get("ngroups", 1), "conv_kernel": ssm.get("d_conv", 4),
        "chunk_size": ssm.get("chunk_size", 256),
        "use_bias": ssm.get("bias", False), "use_conv_bias": ssm.get("conv_bias", True), "layer_norm_epsilon": 1e-5,
        "rms_norm": True, "residual_in_fp32": config.get("residual_in_fp32", True),
        "tie_word_embeddings": config.get("tie_embeddings", True), "time_step_limit": [0.0, float("inf")],
        "norm_before_gate": False,
    }  # fmt: skip


class Mamba2Adapter(HFAdapter):
    family = "mamba2"
    architectures = ("Mamba2ForCausalLM",)
    model_type = "mamba2"
    # No position embeddings: the sequence length is how long the training sequences are, not the weights'.
    training_choices = ("seq_length",)

    config_class = "Mamba2Config"
    config_defaults = {
        "num_heads": 128, "head_dim": 64, "vocab_size": 32768, "hidden_size": 4096, "state_size": 128,
        "num_hidden_layers": 64, "layer_norm_epsilon": 1e-5, "expand": 2, "conv_kernel": 4, "n_groups": 8,
        "use_bias": False, "use_conv_bias": True, "hidden_act": "silu", "time_step_limit": (0.0, math.inf),
        "chunk_size": 256, "tie_word_embeddings": False,
    }  # fmt: skip

    def model_config_from(self, hf: dict, where: str) -> ModelConfig:
        hidden, expand, head_dim, heads = hf["hidden_size"], hf["expand"], hf["head_dim"], hf["num_heads"]
        require(heads * head_dim == expand * hidden, where,
                f"num_heads x head_dim = {heads * head_dim} != expand x hidden_size = {expand * hidden}")  # fmt: skip
        require(not hf["use_bias"], where, "use_bias=true is not supported (MambaMixer has no biases)")
        require(hf["use_conv_bias"], where, "use_conv_bias=false is not supported")
        require(hf["hidden_act"] == "silu", where, f"hidden_act={hf['hidden_act']!r}: MambaMixer's is silu")
        # transformers' gated norm uses layer_norm_epsilon; MambaMixer's (and ours) has 1e-5 built in.
        eps = hf["layer_norm_epsilon"]
        require(eps == 1e-5, where, f"layer_norm_epsilon={eps}: MambaMixer's gated norm has 1e-5")
        # Not Mamba2Config fields (transformers 5 ignores them); mamba_ssm-derived configs may carry them.
        require(not hf.get("norm_before_gate", False), where, "norm_before_gate=true is not supported")
        require(hf.get("rms_norm", True), where, "rms_norm=false is not supported")
        limit = tuple(hf["time_step_limit"])
        require(limit == (0.0, math.inf), where, f"time_step_limit={list(limit)}: only (0, inf) (no dt clamp)")
        return ModelConfig(
            family="mamba2", num_layers=hf["num_hidden_layers"], hidden_size=hidden, num_attention_heads=heads,
            seq_length=2048, vocab_size=hf["vocab_size"], make_vocab_size_divisible_by=16, normalization="RMSNorm",
            add_bias_linear=False, tie_embeddings=bool(hf["tie_word_embeddings"]), layernorm_epsilon=eps,
            hidden_dropout=0.0, attention_dropout=0.0, mamba_state_dim=hf["state_size"], mamba_head_dim=head_dim,
            mamba_expand=expand, mamba_num_groups=hf["n_groups"], mamba_conv_kernel=hf["conv_kernel"],
            mamba_chunk_size=hf["chunk_size"],
        )  # fmt: skip

    def from_native_config(self, config: dict, where: str = "config.json") -> tuple[dict, int] | None:
        """state-spaces/mamba2-* ``config.json`` (mamba_ssm's MambaLMHeadModel: ``d_model``, ``n_layer``,
        ``ssm_cfg``): the Mamba2ForCausalLM config of its stored (padded) rows, and the tokenizer's vocabulary
        (50,277 for GPT-NeoX-20B, stored as 50,288 rows: ``pad_vocab_size_multiple`` 16)."""
        if not {"d_model", "n_layer", "ssm_cfg"} <= set(config):
            return None
        return hf_config_from_mamba_ssm(config, where), config["vocab_size"]

    def hf_config(self, m: ModelConfig, special_tokens: dict, dtype: str) -> dict:
        return {
            "architectures": ["Mamba2ForCausalLM"], "model_type": "mamba2", "hidden_size": m.hidden_size,
            "num_hidden_layers": m.num_layers, "vocab_size": m.vocab_size, "state_size": m.mamba_state_dim,
            "expand": m.mamba_expand, "head_dim": m.mamba_head_dim,
            "num_heads": m.mamba_expand * m.hidden_size // m.mamba_head_dim, "n_groups": m.mamba_num_groups,
            "conv_kernel": m.mamba_conv_kernel, "chunk_size": m.mamba_chunk_size, "use_bias": False,
            "use_conv_bias": True, "layer_norm_epsilon": m.layernorm_epsilon, "rms_norm": True,
            "residual_in_fp32": True, "tie_word_embeddings": m.tie_embeddings,
            "time_step_limit": [0.0, float("inf")], "norm_before_gate": False, "dtype": dtype, **special_tokens,
        }  # fmt: skip

    def globals_from_hf(self, m, read):
        resolve = getattr(read, "resolve", None)
        emb = "backbone.embeddings.weight"
        if resolve is not None and resolve(emb) is None:
            emb = "backbone.embedding.weight"  # mamba_ssm's name
        out = {WORD_EMBEDDINGS: read(emb), FINAL_NORM: read("backbone.norm_f.weight")}
        if not m.tie_embeddings:
            out["output_layer.weight"] = read("lm_head.weight")
        return out

    def globals_to_hf(self, m, ours):
        out = {"backbone.embeddings.weight": ours[WORD_EMBEDDINGS], "backbone.norm_f.weight": ours[FINAL_NORM]}
        if not m.tie_embeddings:
            out["lm_head.weight"] = ours["output_layer.weight"]
        return out

    def layer_from_hf(self, m, i, read):
        return {ours: read(f"backbone.layers.{i}.{theirs}") for ours, theirs in _LAYER}

    def layer_to_hf(self, m, i, ours):
        return {f"backbone.layers.{i}.{theirs}": ours[mine] for mine, theirs in _LAYER}


ADAPTER = Mamba2Adapter()
