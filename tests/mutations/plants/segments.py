"""Plants in how families keep packed segments apart (Mamba2 evaluation and SFT packing)."""

from __future__ import annotations

from plant import Plant

MAMBA_FAMILY = "megatron_biomed/models/mamba/family.py"

PLANTS = [
    Plant(
        "mamba-state-leaks-across-documents",
        "a Mamba2 model does not restart its conv and scan at packed documents (SFT packing leaks state)",
        [
            (
                MAMBA_FAMILY,
                "            reset_at_documents=not use_mamba_ssm,\n",
                "            reset_at_documents=False,\n",
            )
        ],  # fmt: skip
        ["tests/finetune/test_mamba_sft.py"],
    ),
    Plant(
        "mamba-options-share-a-prompt",
        "evaluation packs a Mamba2 model's options behind one prompt (option k scored after the others)",
        [
            (
                MAMBA_FAMILY,
                "        return SegmentIsolation.NONE if mamba_ssm_available() else SegmentIsolation.STATE_RESET\n",
                "        return SegmentIsolation.ATTENTION_MASK\n",
            )
        ],  # fmt: skip
        ["tests/eval/test_mamba_scoring.py"],
    ),
]
