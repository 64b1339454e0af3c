"""Plants in Hugging Face conversion: config reading, import and export mappings."""

from __future__ import annotations

from plant import Plant

PLANTS = [
    Plant(
        "hf-config-not-completed",
        "config.json is not completed by transformers' config class (fields left out lose their defaults)",
        [("megatron_biomed/convert/registry.py", "        return config.to_dict()\n", "        return dict(hf)\n")],
        ["tests/convert/test_hf_configs.py"],
    ),
    Plant(
        "export-reads-the-first-layer-everywhere",
        "the exporter reads every layer of a layer-stacked key at layer 0's offsets",
        [
            (
                "megatron_biomed/convert/exporter.py",
                "            chunks[(sh.key, tuple(sh.global_offset))] = data.view(",
                "            chunks[(sh.key, (0,) * len(sh.global_offset))] = data.view(",
            )
        ],  # fmt: skip
        ["tests/convert/test_hf_configs.py"],
    ),
    Plant(
        "llama-gqa-query-heads-strided",
        "import assigns query heads to key/value groups strided (head h to group h % groups) instead of in blocks",
        [
            (
                "megatron_biomed/convert/llama.py",
                "[q.reshape(groups, per * d, *rest), k.reshape",
                "[q.reshape(per, groups, d, *rest).transpose(0, 1).reshape(groups, per * d, *rest), k.reshape",
            )
        ],  # fmt: skip
        ["tests/convert/test_peaked_logits.py::test_llama_attention_groupings_and_ties[gqa2]"],
    ),
    Plant(
        "llama-export-k-v-swapped",
        "export splits each query group of the fused linear_qkv as [q | v | k]",
        [("megatron_biomed/convert/llama.py", "    q, k, v = torch.split(g,", "    q, v, k = torch.split(g,")],
        ["tests/convert/test_peaked_logits.py::test_llama_attention_groupings_and_ties[mqa]"],
    ),
    Plant(
        "llama-export-untied",
        "export writes tie_word_embeddings=false for a tied model (transformers then starts a fresh lm_head)",
        [
            (
                "megatron_biomed/convert/llama.py",
                '"tie_word_embeddings": m.tie_embeddings,',
                '"tie_word_embeddings": False,',
            )
        ],
        ["tests/convert/test_peaked_logits.py::test_llama_attention_groupings_and_ties[gqa8]"],
    ),
    Plant(
        "llama-rotary-permuted",
        "import applies the Meta -> HF rotary permutation to q_proj and k_proj (both sides rotate halves: none is due)",
        [
            (
                "megatron_biomed/convert/llama.py",
                'read(a + "q_proj.weight"), read(a + "k_proj.weight"),',
                'read(a + "q_proj.weight").view(m.num_attention_heads, 2, -1, m.hidden_size).transpose(1, 2)'
                ".reshape(-1, m.hidden_size), "
                'read(a + "k_proj.weight").view(m.kv_heads, 2, -1, m.hidden_size).transpose(1, 2)'
                ".reshape(-1, m.hidden_size),",
            )
        ],  # fmt: skip
        ["tests/convert/test_peaked_logits.py::test_llama_attention_groupings_and_ties[mha]"],
    ),
    Plant(
        "gpt2-inverse-layer-scale-ignored",
        "import ignores config.json's scale_attn_by_inverse_layer_idx (BioMedLM's option)",
        [
            (
                "megatron_biomed/convert/gpt2.py",
                'scale_attn_by_inverse_layer_idx=bool(hf["scale_attn_by_inverse_layer_idx"]),',
                "scale_attn_by_inverse_layer_idx=False,",
            )
        ],  # fmt: skip
        ["tests/convert/test_peaked_logits.py::test_gpt2_scale_attn_by_inverse_layer_idx[flag-true]"],
    ),
    Plant(
        "gpt2-inverse-layer-scale-not-exported",
        "export writes scale_attn_by_inverse_layer_idx=false whatever the model was trained with",
        [
            (
                "megatron_biomed/convert/gpt2.py",
                '"scale_attn_by_inverse_layer_idx": m.scale_attn_by_inverse_layer_idx,',
                '"scale_attn_by_inverse_layer_idx": False,',
            )
        ],  # fmt: skip
        ["tests/convert/test_peaked_logits.py::test_gpt2_scale_attn_by_inverse_layer_idx[flag-true]"],
    ),
    Plant(
        "mamba2-in-proj-tp-split-order",
        "Mamba2's sharded in_proj is split [z | B | x | C | dt] per TP rank (consistent at TP 1, wrong resharded)",
        [
            (
                "megatron_biomed/models/mamba/mixer.py",
                '[d, d, gn, gn, h], ["z", "x", "B", "C", "dt"]',
                '[d, gn, d, gn, h], ["z", "x", "B", "C", "dt"]',
            )
        ],  # fmt: skip
        ["tests/convert/test_convert_hf.py::test_layouts_match_transformers"],
    ),
]
