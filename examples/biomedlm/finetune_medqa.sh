#!/usr/bin/env bash
# BioMedLM 2.7B fine-tuned on MedQA (USMLE, 4 options) with a multiple-choice head, with torchrun on one
# node of 8 GPUs by default (as BioMedLM's own fine-tuning ran: one node, torch.distributed.launch).
#
#   bash examples/biomedlm/prepare_finetune_vocab.sh    # once: the checkpoints with the formats' added tokens
#   bash examples/biomedlm/finetune_medqa.sh
#   DRY_RUN=1 bash examples/biomedlm/finetune_medqa.sh            # print the plan only (no GPU, no torchrun)
#   EPOCHS=3 LR=1e-5 bash examples/biomedlm/finetune_medqa.sh     # one point of a grid (warmup follows)
#
# This file holds what is MedQA's; the model, the shared settings and their sources, the layout, the schedule
# and the launch are _finetune.sh's. Arguments given to this script are appended last and win.
#
# Sources. [BioMedLM code] = stanford-crfm/BioMedLM finetune/README.md and finetune/mc/run_experiments.py:
# max_seq_length 512, eval every 500 steps, log every 20; its epochs and batch size are grid placeholders
# ({epochs}, {grad_accum}), so ours are marked "our choice".
set -euo pipefail

REPO_DIR="${REPO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"

# Data: MedQA JSONL ({"question", "options": {"A".."D"}, "answer_idx"}, data_clean/questions/US/4_options).
DATA_DIR="${DATA_DIR:-/data/medqa}"
TRAIN_FILE="${TRAIN_FILE:-${DATA_DIR}/train.jsonl}"
VALID_FILE="${VALID_FILE-${DATA_DIR}/dev.jsonl}"

# Outputs (checkpoints and TensorBoard logs go under runs/RUN_NAME unless CHECKPOINT_DIR / TENSORBOARD_DIR say).
RUN_NAME="${RUN_NAME:-biomedlm-2.7b-medqa}"
SAVE_INTERVAL="${SAVE_INTERVAL:-500}"

# --- the split sizes and the schedule (the shared part turns epochs into steps and warmup) ---------------
# TRAIN_ITEMS / VALID_ITEMS: questions in the splits (MedQA US 4-option: 10,178 train, 1,272 dev).
TRAIN_ITEMS="${TRAIN_ITEMS:-10178}"
VALID_ITEMS="${VALID_ITEMS:-1272}"
EPOCHS="${EPOCHS:-5}"                 # our choice (BioMedLM code: grid placeholder {epochs})
GLOBAL_BATCH="${GLOBAL_BATCH:-32}"    # our choice (BioMedLM code: devices x per-device batch x {grad_accum})
EVAL_INTERVAL=500
LOG_INTERVAL=20

# --- the task ----------------------------------------------------------------------------------------
INPUT_FORMAT="${INPUT_FORMAT:-biomedlm-mc}"  # BioMedLM code: finetune/mc/run_multiple_choice.py (finetune/formats.py)
ADDED_TOKENS=mc                       # its added tokens: [PAD] [CLS] [SEP] (prepare_finetune_vocab.sh)
TASK_ARGS=(
  --task mc
  --format medqa
  # One sequence per (question, option): "question[SEP] option[SEP]" (INPUT_FORMAT=biomedlm-mc, BioMedLM code
  # run_multiple_choice.py), 512 tokens (BioMedLM code), cut longest-first from the right, padded with [PAD];
  # a Linear(hidden, 1) head scores each option's final [SEP].
  --set task.max_seq_length=512
  --set task.num_choices=4
)

# Everything else (layout, optimizer, outputs, dry run, torchrun) is shared by the BioMedLM fine-tunes.
source "${REPO_DIR}/examples/biomedlm/_finetune.sh"
