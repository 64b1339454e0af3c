"""Plants in Hugging Face conversion: config reading, import and export mappings."""

from __future__ import annotations

from plant import Plant

PLANTS = [
    Plant(
        "hf-config-not-completed",
        "config.json is not completed by transformers' config class (fields left out lose their defaults)",
        [("megatron_biomed/convert/registry.py", "        return config.to_dict()\n", "        return dict(hf)\n")],
        ["tests/convert/test_hf_configs.py"],
        fast=True,
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
]
