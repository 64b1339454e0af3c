#!/usr/bin/env bash
# BioLLM 70B (LLaMA-2-70B shape, 2,000 PubMed tokens added to the vocabulary) pretraining with torchrun.
# 70B needs TP x PP = 32 GPUs per model replica, so this runs on many nodes: start it on every node with
# the same MASTER_ADDR and its own NODE_RANK. The recipe is _pretrain.sh; the SLURM version of it is
# pretrain_70b.sbatch.
#
#   NODE_RANK=0 MASTER_ADDR=node001 bash examples/biollm/pretrain_70b.sh      # on each of the 32 nodes
#   DRY_RUN=1 bash examples/biollm/pretrain_70b.sh                            # print the 256-rank plan only
#   bash examples/biollm/pretrain_70b.sh --dry-run --set train.train_iters=5000
#
# Arguments given to this script are appended last and win.
set -euo pipefail

REPO_DIR="${REPO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
# 32 nodes of 8 GPUs (examples/_launch.sh: the other machine variables).
NNODES="${NNODES:-32}"
# shellcheck source=_pretrain.sh
source "${REPO_DIR}/examples/biollm/_pretrain.sh"

# --- dry run (DRY_RUN=1 or --dry-run: the plan only) or torchrun: examples/_launch.sh --------------------
source "${REPO_DIR}/examples/_launch.sh"
launch_torchrun tools/pretrain.py "$@"
