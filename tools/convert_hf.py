#!/usr/bin/env python
"""Hugging Face <-> megatron-biomed checkpoints, proven by logits in tests/convert.

    python tools/convert_hf.py import --hf-dir BioMedLM --save ckpt/biomedlm --preset biomedlm-2.7b \
        --tensor-model-parallel-size 2
    python tools/convert_hf.py export --load ckpt/biomedlm --out hf/biomedlm --dtype bfloat16
"""

import sys

from megatron_biomed.console import quiet_third_party_notices

quiet_third_party_notices()  # before the library imports megatron-core, which warns while importing
from megatron_biomed.convert.cli import main  # noqa: E402

if __name__ == "__main__":  # dist_checkpointing starts spawn-mode helpers: the guard is required
    sys.exit(main())
