#!/usr/bin/env python
"""Fine-tune a checkpoint: multiple-choice / classification heads, SFT, DPO. Launch with torchrun or srun.

    torchrun --nproc-per-node 2 tools/finetune.py --task mc --init-from ckpt/pretrain \
        --train-file data/medqa/train.jsonl --valid-file data/medqa/dev.jsonl --format medqa \
        --save ckpt/medqa --set parallel.tensor_model_parallel_size=2
"""

import sys

from megatron_biomed.console import quiet_third_party_notices
from megatron_biomed.training.signals import catch_early  # noqa: E402

catch_early()  # a preemption signal during start-up is honoured after the first step, not fatal
quiet_third_party_notices()  # before the library imports megatron-core, which warns while importing
from megatron_biomed.finetune.cli import main  # noqa: E402

if __name__ == "__main__":  # dist_checkpointing starts spawn-mode helpers: the guard is required
    sys.exit(main())
