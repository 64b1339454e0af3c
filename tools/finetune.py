#!/usr/bin/env python
"""Fine-tune a checkpoint: multiple-choice / classification heads, SFT, DPO. Launch with torchrun or srun.

    torchrun --nproc-per-node 2 tools/finetune.py --task mc --init-from ckpt/pretrain \
        --train-file data/medqa/train.jsonl --valid-file data/medqa/dev.jsonl --format medqa \
        --save ckpt/medqa --set parallel.tensor_model_parallel_size=2
"""

import sys

from megatron_biomed.console import quiet_third_party_notices
from megatron_biomed.training.signals import catch_early

# The library is imported under the guard, not at the top: dist_checkpointing's writer starts a spawn-mode
# multiprocessing Manager at the first save, and its child process re-imports this file as __mp_main__; imported
# at the top, torch and megatron-core would be imported again there (2-4 s per process, measured on CPU).
if __name__ == "__main__":
    catch_early()  # a preemption signal during start-up is honoured after the first step, not fatal
    quiet_third_party_notices()  # before the library imports megatron-core, which warns while importing
    from megatron_biomed.finetune.cli import main

    sys.exit(main())
