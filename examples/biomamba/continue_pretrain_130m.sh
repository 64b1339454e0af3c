#!/usr/bin/env bash
# BioMamba-130m: continue pretraining state-spaces/mamba2-130m on the 80/10/10 PubMed / C4 / Wikipedia blend
# with torchrun (one node of 8 GPUs by default; set NNODES/NODE_RANK/MASTER_ADDR and run on every node for more).
# The recipe (data, tokenizer, optimizer, per-corpus validation) is examples/biomamba/_recipe.sh; the SLURM
# version is continue_pretrain_130m.sbatch.
#
#   bash examples/biomamba/continue_pretrain_130m.sh                # train
#   DRY_RUN=1 bash examples/biomamba/continue_pretrain_130m.sh      # print the plan only (no GPU, no torchrun)
#   bash examples/biomamba/continue_pretrain_130m.sh --set train.train_iters=100   # later arguments win
set -euo pipefail

SIZE=130m
REPO_DIR="${REPO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
PYTHON="${PYTHON:-python}"
# A command, word-split on purpose: e.g. TORCHRUN="python -m torch.distributed.run".
TORCHRUN="${TORCHRUN:-torchrun}"
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"
NPROC_PER_NODE="${NPROC_PER_NODE:-8}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
MASTER_PORT="${MASTER_PORT:-29500}"
WORLD_SIZE_PLANNED=$((NNODES * NPROC_PER_NODE))
# Data parallel over the 8 GPUs, 256 / (16 x 8) micro-batches of 16 sequences per step.
MICRO_BATCH_SIZE="${MICRO_BATCH_SIZE:-16}"
# shellcheck source=_recipe.sh
source "${REPO_DIR}/examples/biomamba/_recipe.sh"

# --- dry run (DRY_RUN=1 or --dry-run: the plan only) or torchrun: examples/_launch.sh --------------------
source "${REPO_DIR}/examples/_launch.sh"
launch tools/pretrain.py "$@"
