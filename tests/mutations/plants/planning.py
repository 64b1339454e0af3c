"""Plants in the planner's memory terms (issue 17): a tensor dropped from an estimate must fail the comparison
with a built model (tests/planning/test_memory_measured.py), exact for parameters, 0.02% for activations."""

from __future__ import annotations

from plant import Plant

GPT_TERMS = "megatron_biomed/planning/gpt_terms.py"
MEASURED = "tests/planning/test_memory_measured.py"

PLANTS = [
    Plant(
        "rope-tables-dropped",
        "the RoPE cos / sin tables a layer saves are left out of the activations",
        [(GPT_TERMS, "        attn += 4 * e * s * hd  # cos / sin tables for q and k\n", "        attn += 0\n")],
        [MEASURED + "::test_activation_bytes_match_saved_tensors[tiny-llama-none-None-1-0.1]"],
    ),
    Plant(
        "final-norm-bias-dropped",
        "the final LayerNorm's bias is left out of the last stage's parameters",
        [(GPT_TERMS, "        return norm_parameters(m)\n", "        return m.hidden_size  # the norm's weight\n")],
        [MEASURED + "::test_weights_gradients_optimizer_match_built_model[tiny-biomedlm-fp32-False-None]"],
    ),
    Plant(
        "recomputed-rope-frequencies-dropped",
        "the rotary frequencies every recomputed layer keeps as an input are left out",
        [
            (
                GPT_TERMS,
                "            return 4 * m.seq_length * (m.hidden_size // m.num_attention_heads)\n",
                "            return 0.0\n",
            )
        ],
        [MEASURED + "::test_activation_bytes_match_saved_tensors[tiny-llama-full-None-1-0.1]"],
    ),
]
