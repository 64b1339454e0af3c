"""Plants in the layering of the package (tests/test_import_layers.py)."""

from __future__ import annotations

from plant import Plant

PLANTS = [
    Plant(
        "config-imports-models",
        "the lowest layer imports a higher one (config -> models)",
        [
            (
                "megatron_biomed/config/presets.py",
                "from megatron_biomed.config.experiment import",
                "from megatron_biomed.models import registry as _registry  # noqa: F401\n"
                "from megatron_biomed.config.experiment import",
            )
        ],  # fmt: skip
        ["tests/test_import_layers.py"],
    ),
]
