#!/usr/bin/env python
"""Pretrain a GPT with megatron-core. Launch with torchrun or srun; see examples/ for recipes.

    torchrun --nproc-per-node 4 tools/pretrain.py --preset tiny-biomedlm \
        --set parallel.tensor_model_parallel_size=2 --set parallel.pipeline_model_parallel_size=2 \
        --set data.blend=data/pubmed_text_document --set data.tokenizer=data/tokenizer
"""

import sys

from megatron_biomed.console import quiet_third_party_notices
from megatron_biomed.training.signals import catch_early  # noqa: E402

catch_early()  # a preemption signal during start-up is honoured after the first step, not fatal
quiet_third_party_notices()  # before the library imports megatron-core, which warns while importing
from megatron_biomed.training.pretrain import main  # noqa: E402

if __name__ == "__main__":  # dist_checkpointing starts spawn-mode helpers: the guard is required
    sys.exit(main())
