#!/usr/bin/env bash
# BioMamba: continue pretraining state-spaces/mamba2-<size> on the 80/10/10 PubMed / C4 / Wikipedia blend with
# torchrun (one node of 8 GPUs by default; set NNODES/NODE_RANK/MASTER_ADDR and run on every node for more).
# The size is the first argument: 130m, 370m, 780m, 1.3b or 2.7b. The recipe (sizes, data, tokenizer,
# optimizer, per-corpus validation) is examples/biomamba/_recipe.sh; the SLURM version is continue_pretrain.sbatch.
#
#   bash examples/biomamba/continue_pretrain.sh 130m                # train
#   DRY_RUN=1 bash examples/biomamba/continue_pretrain.sh 2.7b      # print the plan only (no GPU, no torchrun)
#   bash examples/biomamba/continue_pretrain.sh 130m --set train.train_iters=100   # later arguments win
set -euo pipefail

# The size; the remaining arguments go to tools/pretrain.py.
SIZE="${1-}"
[[ $# -eq 0 ]] || shift
REPO_DIR="${REPO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
# shellcheck source=_recipe.sh
source "${REPO_DIR}/examples/biomamba/_recipe.sh"

# --- dry run (DRY_RUN=1 or --dry-run: the plan only) or torchrun: examples/_launch.sh --------------------
source "${REPO_DIR}/examples/_launch.sh"
launch_torchrun tools/pretrain.py "$@"
