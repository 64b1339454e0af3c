"""config.json files as published on the Hugging Face Hub (the fields that define the model, as the files have
them: older files lack what later transformers versions write, e.g. Llama-2's ``rope_theta`` and ``head_dim``)."""

from __future__ import annotations

# stanford-crfm/BioMedLM config.json
BIOMEDLM = {
    "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_layer": 32, "n_head": 20, "n_embd": 2560,
    "n_positions": 1024, "n_inner": None, "vocab_size": 28896, "activation_function": "gelu_new",
    "layer_norm_epsilon": 1e-5, "attn_pdrop": 0.1, "embd_pdrop": 0.1, "resid_pdrop": 0.1,
    "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": True, "reorder_and_upcast_attn": False,
    "bos_token_id": 28895, "eos_token_id": 28895, "pad_token_id": 28895, "initializer_range": 0.02,
    "tie_word_embeddings": True,
}  # fmt: skip

# meta-llama/Llama-2-7b-hf config.json (written by transformers 4.31)
LLAMA_2_7B = {
    "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 4096,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None, "tie_word_embeddings": False,
    "torch_dtype": "float16", "transformers_version": "4.31.0.dev0", "use_cache": True, "vocab_size": 32000,
}  # fmt: skip

# meta-llama/Llama-2-70b-hf config.json (written by transformers 4.32): BioLLM-70B's base
LLAMA_2_70B = LLAMA_2_7B | {
    "hidden_size": 8192, "intermediate_size": 28672, "num_attention_heads": 64, "num_hidden_layers": 80,
    "num_key_value_heads": 8, "transformers_version": "4.32.0.dev0",
}  # fmt: skip

# state-spaces/mamba2-130m config.json (mamba_ssm's own format: no model_type, no architectures)
MAMBA2_130M = {
    "d_model": 768, "d_intermediate": 0, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {"layer": "Mamba2"},
    "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
    "pad_vocab_size_multiple": 16, "tie_embeddings": True,
}  # fmt: skip

# state-spaces/mamba2-2.7b config.json
MAMBA2_2_7B = MAMBA2_130M | {"d_model": 2560, "n_layer": 64}
