#!/usr/bin/env bash
# BioMedLM 2.7B pretraining with torchrun (one node by default; set NNODES/NODE_RANK/MASTER_ADDR and run
# this on every node for more). The recipe is _pretrain.sh; the SLURM version of it is pretrain_2.7b.sbatch.
#
#   bash examples/biomedlm/pretrain_2.7b.sh                      # 8 GPUs on this node
#   DRY_RUN=1 bash examples/biomedlm/pretrain_2.7b.sh            # print the plan only (no GPU, no torchrun)
#   bash examples/biomedlm/pretrain_2.7b.sh --dry-run            # the same
#   bash examples/biomedlm/pretrain_2.7b.sh --set train.train_iters=100 --set logging.log_interval=10
#
# Arguments given to this script are appended last and win.
set -euo pipefail

REPO_DIR="${REPO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
# shellcheck source=_pretrain.sh
source "${REPO_DIR}/examples/biomedlm/_pretrain.sh"

# --- dry run (DRY_RUN=1 or --dry-run: the plan only) or torchrun: examples/_launch.sh --------------------
source "${REPO_DIR}/examples/_launch.sh"
launch_torchrun tools/pretrain.py "$@"
