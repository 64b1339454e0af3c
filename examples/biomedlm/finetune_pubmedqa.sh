#!/usr/bin/env bash
# BioMedLM 2.7B fine-tuned on PubMedQA (PQA-L, yes / no / maybe) with a sequence-classification head, with
# torchrun on one node of 8 GPUs by default (as BioMedLM's own fine-tuning ran: one node, 8 processes).
#
#   bash examples/biomedlm/prepare_finetune_vocab.sh    # once: the checkpoints with the formats' added tokens
#   bash examples/biomedlm/finetune_pubmedqa.sh
#   DRY_RUN=1 bash examples/biomedlm/finetune_pubmedqa.sh      # print the plan only (no GPU, no torchrun)
#   DATA_DIR=/data/pubmedqa/pqal_fold3 bash examples/biomedlm/finetune_pubmedqa.sh   # another fold
#
# This file holds what is PubMedQA's; the model, the shared settings and their sources, the layout, the
# schedule and the launch are _finetune.sh's. Arguments given to this script are appended last and win.
#
# Sources. [BioMedLM code] = stanford-crfm/BioMedLM finetune/README.md (the seqcls/run_seqcls_gpt.py command)
# and finetune/seqcls/preprocess_blurb_seqcls.py (BLURB's splits): a per-device batch of 1, no evaluation
# during training, log every 100 steps; its epochs, gradient accumulation and sequence length are grid
# placeholders ({num_epochs}, {grad_accum}, {seq_len}), so ours are marked "our choice".
set -euo pipefail

REPO_DIR="${REPO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"

# Data: PubMedQA PQA-L in the ori_pqal.json layout ({pmid: {"QUESTION", "CONTEXTS", "final_decision"}}):
# BLURB's fold 0 of the 10-fold split, as BioMedLM code reads it (pqal_fold0/train_set.json, dev_set.json).
DATA_DIR="${DATA_DIR:-/data/pubmedqa/pqal_fold0}"
TRAIN_FILE="${TRAIN_FILE:-${DATA_DIR}/train_set.json}"
VALID_FILE="${VALID_FILE-${DATA_DIR}/dev_set.json}"

# Outputs (checkpoints and TensorBoard logs go under runs/RUN_NAME unless CHECKPOINT_DIR / TENSORBOARD_DIR say).
RUN_NAME="${RUN_NAME:-biomedlm-2.7b-pubmedqa}"
SAVE_INTERVAL="${SAVE_INTERVAL:-0}"  # 0: one checkpoint, at the end (the run is short)

# --- the split sizes and the schedule (the shared part turns epochs into steps and warmup) ---------------
# TRAIN_ITEMS / VALID_ITEMS: items in the splits. PQA-L has 1,000 labelled items, 500 of them the test set;
# each fold of the 10-fold split trains on 450 of the other 500 and validates on 50.
TRAIN_ITEMS="${TRAIN_ITEMS:-450}"
VALID_ITEMS="${VALID_ITEMS:-50}"
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
  --format pubmedqa
  # 1024 tokens, the model's whole context (our choice: BioMedLM code's {seq_len} is a placeholder), so
  # abstracts are rarely cut; longer ones are cut longest-first from the right (the context's end: BioMedLM
  # code's truncation=True), the markers kept. A Linear(hidden, 3, bias=False) head
  # (GPT2ForSequenceClassification, as in BioMedLM code).
  --set task.max_seq_length=1024
  --set task.num_labels=3
)

# Everything else (layout, optimizer, outputs, dry run, torchrun) is shared by the BioMedLM fine-tunes.
source "${REPO_DIR}/examples/biomedlm/_finetune.sh"
