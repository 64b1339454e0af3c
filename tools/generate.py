#!/usr/bin/env python
"""Generation from a checkpoint (any saved TP/PP layout; the model from its run_config.yaml): KV cache, greedy
or sampled (--temperature/--top-k/--top-p/--seed), batched --prompt's, --stop strings, --stream. One process,
or tensor parallel over the ranks of ``torchrun --nproc-per-node N``.

    python tools/generate.py --load runs/quickstart/checkpoints --tokenizer runs/quickstart/tokenizer \
        --prompt "Patients with type 2 diabetes" --stream
"""

import sys

from megatron_biomed.console import quiet_third_party_notices

quiet_third_party_notices()  # before the library imports megatron-core, which warns while importing
from megatron_biomed.inference.generate import main  # noqa: E402

if __name__ == "__main__":  # dist_checkpointing starts spawn-mode helpers: the guard is required
    sys.exit(main())
