#!/usr/bin/env bash
# BioMedLM 2.7B fine-tuned on BioASQ yes/no questions with a sequence-classification head, with
# torchrun on one node of 8 GPUs by default (as BioMedLM's own fine-tuning ran: one node, 8 processes).
#
#   bash examples/biomedlm/prepare_finetune_vocab.sh    # once: the checkpoints with the formats' added tokens
#   bash examples/biomedlm/finetune_bioasq.sh
#   DRY_RUN=1 bash examples/biomedlm/finetune_bioasq.sh        # print the plan only (no GPU, no torchrun)
#   TRAIN_FILE=training7b.json VALID_FILE= bash examples/biomedlm/finetune_bioasq.sh  # no dev split
#
# This file holds what is BioASQ's; the model, the shared settings and their sources, the layout, the
# schedule and the launch are _finetune.sh's. Arguments given to this script are appended last and win.
#
# Sources. [BioMedLM code] = stanford-crfm/BioMedLM finetune/README.md (the seqcls/run_seqcls_gpt.py command,
# as for PubMedQA) and finetune/seqcls/preprocess_blurb_seqcls.py (BLURB's splits): a per-device batch of 1,
# no evaluation during training, log every 100 steps; its epochs, gradient accumulation and sequence length
# are grid placeholders ({num_epochs}, {grad_accum}, {seq_len}), so ours are marked "our choice".
set -euo pipefail

REPO_DIR="${REPO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"

# Data: BioASQ Task B questions as a golden JSON file ({"questions": [...]}) or JSONL; only the yes/no
# questions are kept (the others are counted as skipped), with their snippets as the context. The defaults
# name BLURB's split of the Task 7b yes/no questions (the split BioMedLM code prepares), written as JSONL.
DATA_DIR="${DATA_DIR:-/data/bioasq}"
TRAIN_FILE="${TRAIN_FILE:-${DATA_DIR}/train.jsonl}"
VALID_FILE="${VALID_FILE-${DATA_DIR}/dev.jsonl}"

# Outputs (checkpoints and TensorBoard logs go under runs/RUN_NAME unless CHECKPOINT_DIR / TENSORBOARD_DIR say).
RUN_NAME="${RUN_NAME:-biomedlm-2.7b-bioasq}"
SAVE_INTERVAL="${SAVE_INTERVAL:-0}"  # 0: one checkpoint, at the end (the run is short)

# --- the split sizes and the schedule (the shared part turns epochs into steps and warmup) ---------------
# TRAIN_ITEMS / VALID_ITEMS: yes/no questions in the splits. Default: BLURB's BioASQ split (Gu et al.
# 2021, the one BioMedLM code reads): 670 train, 75 dev, 140 test. Set TRAIN_ITEMS to the yes/no count
# the fine-tune logs at start ("train data: read N items from ...") when training on another Task B release.
TRAIN_ITEMS="${TRAIN_ITEMS:-670}"
VALID_ITEMS="${VALID_ITEMS:-75}"
EPOCHS="${EPOCHS:-20}"                # our choice (BioMedLM code: grid placeholder {num_epochs})
GLOBAL_BATCH="${GLOBAL_BATCH:-16}"    # our choice (BioMedLM code: 8 devices x 1 x {grad_accum})
EVAL_INTERVAL=0
LOG_INTERVAL=100

# --- the task ----------------------------------------------------------------------------------------
# "<|CONTEXT|> context <|QUESTION1|> question <|ANSWER|>", the head on the final <|ANSWER|>: the BioMedLM paper's
# format (arXiv 2403.18421 §4.4: context, question and answer tokens, the classifier on the final special
# token). BioMedLM code as released (finetune/seqcls/run_seqcls_gpt.py) adds those tokens but leaves the lines
# that insert them commented out, so it runs the plain pair (context, question): INPUT_FORMAT=biomedlm-pair.
INPUT_FORMAT="${INPUT_FORMAT:-biomedlm-tokens}"
ADDED_TOKENS=seqcls                   # [PAD] <|CONTEXT|> <|QUESTION1|> <|QUESTION2|> <|ANSWER|> (BioMedLM code)
TASK_ARGS=(
  --task classify
  --format bioasq
  # 1024 tokens, the model's whole context (our choice: BioMedLM code's {seq_len} is a placeholder), so
  # abstracts are rarely cut; longer ones are cut longest-first from the right (the context's end: BioMedLM
  # code's truncation=True), the markers kept. A Linear(hidden, 2, bias=False) head
  # (GPT2ForSequenceClassification, as in BioMedLM code).
  --set task.max_seq_length=1024
  --set task.num_labels=2
)

# Everything else (layout, optimizer, outputs, dry run, torchrun) is shared by the BioMedLM fine-tunes.
source "${REPO_DIR}/examples/biomedlm/_finetune.sh"
