"""The BioMedLM and BioLLM-70B recipes against their published values: each row of the table below is a value
its authors published (paper table or page, or a published config file), with that source. A preset or a
launcher that drifts from the table fails, naming the row. Values marked "our choice" in the presets are not
published and are not in the table. BioMamba's rows live in test_published_biomamba.py (same helper)."""

from __future__ import annotations

from pathlib import Path

import pytest
from published import Published, check, check_launcher, row_id

ROOT = Path(__file__).resolve().parents[2]

PAPER = "BioMedLM paper (arXiv 2403.18421)"
CONFIG = "stanford-crfm/BioMedLM config.json"
LLAMA = "meta-llama/Llama-2-70b-hf config.json"
BIOLLM = "BioLLM-70B recipe as the project's issue states it"


def _biomedlm(field: str, value: object, source: str) -> Published:
    return Published("biomedlm-2.7b", field, value, source)


def _biollm(field: str, value: object, source: str) -> Published:
    return Published("biollm-70b", field, value, source)


BIOMEDLM = [
    _biomedlm("model.num_layers", 32, f"{PAPER} Table 1; {CONFIG} n_layer"),
    _biomedlm("model.hidden_size", 2560, f"{PAPER} Table 1; {CONFIG} n_embd"),
    _biomedlm("model.num_attention_heads", 20, f"{PAPER} Table 1; {CONFIG} n_head"),
    _biomedlm("model.ffn_size", 4 * 2560, f"{CONFIG} n_inner null (GPT-2: 4 x n_embd)"),
    _biomedlm("model.seq_length", 1024, f"{PAPER} Table 1; {CONFIG} n_positions"),
    _biomedlm("model.vocab_size", 28896, f"{PAPER} Table 1; {CONFIG} vocab_size"),
    _biomedlm("model.position_embedding_type", "learned_absolute", f"{PAPER} p. 4"),
    _biomedlm("model.normalization", "LayerNorm", f"{CONFIG} (GPT2LMHeadModel)"),
    _biomedlm("model.layernorm_epsilon", 1e-5, f"{CONFIG} layer_norm_epsilon"),
    _biomedlm("model.activation", "gelu_tanh", f"{CONFIG} activation_function gelu_new"),
    _biomedlm("model.add_bias_linear", True, f"{CONFIG} (GPT2LMHeadModel)"),
    _biomedlm("model.tie_embeddings", True, f"{CONFIG} tie_word_embeddings"),
    _biomedlm("model.scale_attn_by_inverse_layer_idx", True, f"{CONFIG} scale_attn_by_inverse_layer_idx"),
    _biomedlm("model.hidden_dropout", 0.1, f"{CONFIG} resid_pdrop, embd_pdrop"),
    _biomedlm("model.attention_dropout", 0.1, f"{CONFIG} attn_pdrop"),
    _biomedlm("model.init_method_std", 0.02, f"{CONFIG} initializer_range"),
    _biomedlm("optimizer.name", "decoupled_adamw", f"{PAPER} p. 6 (Decoupled AdamW)"),
    _biomedlm("optimizer.lr", 1.6e-4, f"{PAPER} Table 5"),
    _biomedlm("optimizer.weight_decay", 1.6e-5, f"{PAPER} Table 5"),
    _biomedlm("optimizer.adam_beta1", 0.9, f"{PAPER} Table 5"),
    _biomedlm("optimizer.adam_beta2", 0.95, f"{PAPER} Table 5"),
    _biomedlm("optimizer.adam_eps", 1e-8, f"{PAPER} Table 5"),
    _biomedlm("optimizer.lr_decay_style", "cosine", f"{PAPER} Table 5"),
    _biomedlm("optimizer.lr_warmup_iters", 100, f"{PAPER} Table 5 (linear warmup over 100 batches)"),
    _biomedlm("train.global_batch_size", 1024, f"{PAPER} p. 6"),
    _biomedlm("train.train_iters", 286_102, f"{PAPER} p. 5: 300B tokens / (1024 x 1024)"),
    _biomedlm("train.precision", "bf16", f"{PAPER} Table 6"),
]

BIOLLM_70B = [
    _biollm("model.num_layers", 80, f"{LLAMA} num_hidden_layers"),
    _biollm("model.hidden_size", 8192, f"{LLAMA} hidden_size"),
    _biollm("model.num_attention_heads", 64, f"{LLAMA} num_attention_heads"),
    _biollm("model.num_query_groups", 8, f"{LLAMA} num_key_value_heads"),
    _biollm("model.ffn_hidden_size", 28672, f"{LLAMA} intermediate_size"),
    _biollm("model.seq_length", 4096, f"{LLAMA} max_position_embeddings"),
    _biollm("model.vocab_size", 32000 + 2000, f"{LLAMA} vocab_size + {BIOLLM} (2,000 added tokens)"),
    _biollm("model.position_embedding_type", "rope", "LLaMA-2 paper (arXiv 2307.09288) §2.2"),
    _biollm("model.rotary_base", 10000, f"{LLAMA} (no rope_theta: transformers' default)"),
    _biollm("model.normalization", "RMSNorm", "LLaMA-2 paper (arXiv 2307.09288) §2.2"),
    _biollm("model.layernorm_epsilon", 1e-5, f"{LLAMA} rms_norm_eps"),
    _biollm("model.activation", "swiglu", f"{LLAMA} hidden_act silu, gated"),
    _biollm("model.add_bias_linear", False, f"{LLAMA} (LlamaForCausalLM)"),
    _biollm("model.tie_embeddings", False, f"{LLAMA} tie_word_embeddings"),
    _biollm("model.hidden_dropout", 0.0, f"{LLAMA} (no dropout)"),
    _biollm("model.attention_dropout", 0.0, f"{LLAMA} (no dropout)"),
    _biollm("model.init_method_std", 0.02, f"{LLAMA} initializer_range"),
    _biollm("optimizer.name", "adamw", BIOLLM),
    _biollm("optimizer.lr", 2e-5, BIOLLM),
    _biollm("optimizer.lr_decay_style", "cosine", BIOLLM),
    _biollm("optimizer.lr_warmup_iters", 2000, BIOLLM),
    _biollm("train.global_batch_size", 512, f"{BIOLLM}: ~2M tokens per step = 512 x 4096"),
]

LAUNCHERS = {
    "biomedlm-2.7b": ROOT / "examples" / "biomedlm" / "_pretrain.sh",
    "biollm-70b": ROOT / "examples" / "biollm" / "_pretrain.sh",
}


@pytest.mark.parametrize("row", BIOMEDLM + BIOLLM_70B, ids=row_id)
def test_preset_holds_the_published_value(row):
    check(row)


@pytest.mark.parametrize("preset", LAUNCHERS)
def test_launcher_spells_out_the_published_values(preset):
    rows = [r for r in BIOMEDLM + BIOLLM_70B if r.preset == preset and r.field != "model.ffn_size"]
    check_launcher(rows, LAUNCHERS[preset])


def test_drift_is_caught_and_named(tmp_path):
    """The check fails on a wrong value, naming the preset, field, values and source; and on a launcher that
    leaves a published field out or changes it."""
    with pytest.raises(AssertionError, match=r"biomedlm-2.7b optimizer.lr_warmup_iters = 100, published 0 \(src\)"):
        check(_biomedlm("optimizer.lr_warmup_iters", 0, "src"))
    with pytest.raises(AssertionError, match="no field"):
        check(_biomedlm("optimizer.warmup", 100, "src"))
    launcher = tmp_path / "recipe.sh"
    launcher.write_text('RECIPE=(\n  --set optimizer.lr=1.6e-4  # ok\n  --set optimizer.adam_eps=1e-7\n'
                        '  --set train.micro_batch_size="${MICRO}"\n)\n')
    rows = [_biomedlm("optimizer.lr", 1.6e-4, "s"), _biomedlm("optimizer.adam_eps", 1e-8, "s"),
            _biomedlm("train.micro_batch_size", 4, "s")]
    with pytest.raises(AssertionError) as err:
        check_launcher(rows, launcher)
    lines = str(err.value).splitlines()
    assert len(lines) == 2 and "--set optimizer.adam_eps=1e-07, published 1e-08" in lines[0]
    assert "no literal --set train.micro_batch_size" in lines[1]
