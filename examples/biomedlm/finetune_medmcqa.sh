#!/usr/bin/env bash
# BioMedLM 2.7B fine-tuned on MedMCQA (4 options) with a multiple-choice head, with torchrun on one node of
# 8 GPUs by default (as BioMedLM's own fine-tuning ran: one node, torch.distributed.launch).
#
#   bash examples/biomedlm/prepare_finetune_vocab.sh    # once: the checkpoints with the formats' added tokens
#   bash examples/biomedlm/finetune_medmcqa.sh
#   DRY_RUN=1 bash examples/biomedlm/finetune_medmcqa.sh          # print the plan only (no GPU, no torchrun)
#   MEDMCQA_COP_BASE=0 DATA_DIR=/data/medmcqa-hf bash examples/biomedlm/finetune_medmcqa.sh
#
# This file holds what is MedMCQA's; the model, the shared settings and their sources, the layout, the
# schedule and the launch are _finetune.sh's. Arguments given to this script are appended last and win.
#
# Sources. [BioMedLM code] = stanford-crfm/BioMedLM finetune/README.md and finetune/mc/run_experiments.py,
# its multiple-choice (MedQA) recipe; the repository has no MedMCQA script, so reusing the MedQA settings
# for MedMCQA is our choice: max_seq_length 512, eval every 500 steps, log every 20; its epochs and batch
# size are grid placeholders ({epochs}, {grad_accum}), so ours are marked "our choice".
set -euo pipefail

REPO_DIR="${REPO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"

# Data: MedMCQA JSONL ({"question", "opa".."opd", "cop"}). "cop", the right option, is 1-based in the
# original release's train.json / dev.json and 0-based in the Hugging Face copy: MEDMCQA_COP_BASE says which
# (a wrong value stops at the first out-of-range "cop" with a message naming this setting).
DATA_DIR="${DATA_DIR:-/data/medmcqa}"
TRAIN_FILE="${TRAIN_FILE:-${DATA_DIR}/train.json}"
VALID_FILE="${VALID_FILE-${DATA_DIR}/dev.json}"
MEDMCQA_COP_BASE="${MEDMCQA_COP_BASE:-1}"

# Outputs (checkpoints and TensorBoard logs go under runs/RUN_NAME unless CHECKPOINT_DIR / TENSORBOARD_DIR say).
RUN_NAME="${RUN_NAME:-biomedlm-2.7b-medmcqa}"
SAVE_INTERVAL="${SAVE_INTERVAL:-1000}"

# --- the split sizes and the schedule (the shared part turns epochs into steps and warmup) ---------------
# TRAIN_ITEMS / VALID_ITEMS: questions in the splits (MedMCQA: 182,822 train, 4,183 dev).
TRAIN_ITEMS="${TRAIN_ITEMS:-182822}"
VALID_ITEMS="${VALID_ITEMS:-4183}"
EPOCHS="${EPOCHS:-2}"                 # our choice (BioMedLM code: grid placeholder {epochs})
GLOBAL_BATCH="${GLOBAL_BATCH:-64}"    # our choice (BioMedLM code: devices x per-device batch x {grad_accum})
EVAL_INTERVAL=500
LOG_INTERVAL=20

# --- the task ----------------------------------------------------------------------------------------
INPUT_FORMAT="${INPUT_FORMAT:-biomedlm-mc}"  # BioMedLM code: finetune/mc/run_multiple_choice.py (finetune/formats.py)
ADDED_TOKENS=mc                       # its added tokens: [PAD] [CLS] [SEP] (prepare_finetune_vocab.sh)
TASK_ARGS=(
  --task mc
  --format medmcqa
  --set task.medmcqa_cop_base="${MEDMCQA_COP_BASE}"
  # One sequence per (question, option): "question[SEP] option[SEP]" (INPUT_FORMAT=biomedlm-mc, BioMedLM code
  # run_multiple_choice.py), 512 tokens (BioMedLM's MedQA length; MedMCQA questions are shorter), cut
  # longest-first from the right, padded with [PAD]; a Linear(hidden, 1) head scores each option's final [SEP].
  --set task.max_seq_length=512
  --set task.num_choices=4
)

# Everything else (layout, optimizer, outputs, dry run, torchrun) is shared by the BioMedLM fine-tunes.
source "${REPO_DIR}/examples/biomedlm/_finetune.sh"
