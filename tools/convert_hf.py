#!/usr/bin/env python
"""Hugging Face <-> megatron-biomed checkpoints, proven by logits in tests/convert.

    python tools/convert_hf.py import --hf-dir BioMedLM --save ckpt/biomedlm --preset biomedlm-2.7b \
        --tensor-model-parallel-size 2
    python tools/convert_hf.py export --load ckpt/biomedlm --out hf/biomedlm --dtype bfloat16
"""

import sys

from megatron_biomed.console import quiet_third_party_notices

# The library is imported under the guard, not at the top: dist_checkpointing's writer starts a spawn-mode
# multiprocessing Manager at the first save, and its child process re-imports this file as __mp_main__; imported
# at the top, torch and megatron-core would be imported again there (2-4 s per process, measured on CPU).
if __name__ == "__main__":
    quiet_third_party_notices()  # before the library imports megatron-core, which warns while importing
    from megatron_biomed.convert.cli import main

    sys.exit(main())
