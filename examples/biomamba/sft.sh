#!/usr/bin/env bash
# BioMamba supervised fine-tuning (instruction tuning) on PubMedQA + BioASQ yes/no, as its authors ran it, with
# torchrun (one GPU by default, as their run_sft.py). It starts from a continued-pretraining checkpoint
# (continue_pretrain.sh's CHECKPOINT_DIR); the size is the first argument (the preset used until that
# checkpoint exists: a dry run).
#
#   python tools/make_instruction_sft.py --pubmedqa ori_pqal.json --bioasq training13b.json --output-dir data/bm-sft
#   DATA_DIR=data/bm-sft bash examples/biomamba/sft.sh 130m
#   DRY_RUN=1 bash examples/biomamba/sft.sh 130m                  # print the plan only (no GPU, no torchrun)
#   bash examples/biomamba/sft.sh 130m --set train.eval_interval=25   # later arguments win
#
# Then score it as they do (tools/evaluate.py): --benchmark bioasq_generative=<BioASQ yes/no file> (greedy,
# first word), --benchmark pubmedqa_biomamba=<PubMedQA file> (log-probability of the label words), and on
# clinical notes in MIMIC-IV-Note's discharge.csv layout --benchmark mimic_completion=discharge.csv and
# --benchmark mimic_discharge=discharge.csv (128 greedy tokens, ROUGE-1/2/L).
#
# Sources. [BioMamba SFT] = LeoYML/BioMamba @ e61db22: ft_biomamba/config.py SFTConfig and QA_TEMPLATE,
# ft_biomamba/run_sft.py (the values it passes to its Trainer), ft_biomamba/run.sh (SFT_*), ft_biomamba/data.py
# prepare_sft_data (the text "instruction + ' ' + answer", labels on the answer tokens only, no end-of-text
# token, padding to 1024 tokens, one example per sequence) and ft_biomamba/trainer.py (AdamW betas 0.9/0.95
# over every parameter, Hugging Face's cosine schedule with warmup, clipping 1.0, bf16 autocast).
# Not reproduced: their early stopping (patience 5 evaluations) and best-of-evaluations checkpoint (we save the
# last); their loss is a mean of 4 micro-batch means per step, ours is per response token over the step's 32
# sequences (megatron-core's per-token loss); their steps restart each epoch (ceil(ceil(N/8)/4) per epoch: 180 for
# the default data), ours run on across epochs (ceil(5 N / 32) = 179); their AdamW decays every parameter,
# megatron-core's leaves biases and 1-D parameters (norms, A_log, D, dt_bias) undecayed.
set -euo pipefail

SIZE="${1-}"
[[ $# -eq 0 ]] || shift
case "${SIZE}" in
  130m | 370m | 780m | 1.3b | 2.7b) ;;
  *) echo "error: $0 takes the size as its first argument, one of 130m, 370m, 780m, 1.3b, 2.7b (got '${SIZE}')" >&2
     exit 2 ;;
esac
REPO_DIR="${REPO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"

# Data: tools/make_instruction_sft.py's train.jsonl / valid.jsonl ({"prompt", "response"}: the QA instruction
# and yes / no / maybe).
DATA_DIR="${DATA_DIR:-/data/biomamba-sft}"
TRAIN_FILE="${TRAIN_FILE:-${DATA_DIR}/train.jsonl}"
VALID_FILE="${VALID_FILE-${DATA_DIR}/valid.jsonl}"
# The continued-pretraining checkpoint (continue_pretrain.sh's CHECKPOINT_DIR); weights only, fresh optimizer.
INIT_FROM="${INIT_FROM:-${REPO_DIR}/runs/biomamba-${SIZE}/checkpoints}"
TOKENIZER="${TOKENIZER-}"  # empty: the tokenizer the checkpoint recorded
RUN_NAME="${RUN_NAME:-biomamba-${SIZE}-sft}"
CHECKPOINT_DIR="${CHECKPOINT_DIR:-${REPO_DIR}/runs/${RUN_NAME}/checkpoints}"
TENSORBOARD_DIR="${TENSORBOARD_DIR:-${REPO_DIR}/runs/${RUN_NAME}/tensorboard}"
SAVE_INTERVAL="${SAVE_INTERVAL:-200}"  # BioMamba SFT: save_steps 200

# --- layout: one GPU, 8 sequences per micro-batch, 4 micro-batches per step --------------------------------
NPROC_PER_NODE="${NPROC_PER_NODE:-1}"  # BioMamba SFT: one GPU (gpu_id)
TP="${TP:-1}"
PP="${PP:-1}"
MICRO_BATCH_SIZE="${MICRO_BATCH_SIZE:-8}"  # BioMamba SFT: batch_size 8 (x accumulation_steps 4)
USE_DISTRIBUTED_OPTIMIZER="${USE_DISTRIBUTED_OPTIMIZER:-false}"

# --- the schedule: steps and warmup from epochs (examples/_finetune.sh) ----------------------------------
# TRAIN_ITEMS / VALID_ITEMS: their data: PubMedQA PQA-L's 1,000 items split 800 / 200, and BioASQ yes/no mixed
# in as 30% of the training part (int(800 x 0.3 / 0.7) = 342). Set them to what make_instruction_sft.py wrote.
TRAIN_ITEMS="${TRAIN_ITEMS:-1142}"
VALID_ITEMS="${VALID_ITEMS:-200}"
EPOCHS="${EPOCHS:-5}"                 # BioMamba SFT: num_epochs 5
GLOBAL_BATCH="${GLOBAL_BATCH:-32}"    # BioMamba SFT: batch_size 8 x accumulation_steps 4
LR="${LR:-2e-5}"                      # BioMamba SFT: lr 2e-5
WARMUP_RATIO="${WARMUP_RATIO:-0.1}"   # BioMamba SFT: warmup_ratio 0.1
SEED="${SEED:-42}"                    # BioMamba SFT: seed 42
LOG_INTERVAL=10                       # BioMamba SFT: logging_steps 10
# shellcheck source=../_finetune.sh
source "${REPO_DIR}/examples/_finetune.sh"

RECIPE=(
  --task sft
  --format sft
  --preset "biomamba-${SIZE}"
  # "instruction answer" with the loss on the answer's tokens only and no end-of-text token (BioMamba SFT:
  # the "biomamba" chat template), at most 1024 tokens, one example per sequence (their padding to max_length).
  --set task.chat_template=biomamba
  --set task.max_seq_length=1024
  --set task.pack=false
  # AdamW (BioMamba SFT: betas 0.9 / 0.95, eps 1e-8 as torch's default, weight decay 0.01), linear warmup over
  # 10% of the steps, cosine decay to 0 (Hugging Face get_cosine_schedule_with_warmup), clipping at 1.0.
  --set optimizer.name=adamw
  --set optimizer.lr="${LR}"
  --set optimizer.min_lr=0.0
  --set optimizer.lr_decay_style=cosine
  --set optimizer.lr_warmup_iters="${WARMUP_ITERS}"
  --set optimizer.weight_decay=0.01
  --set optimizer.adam_beta1=0.9
  --set optimizer.adam_beta2=0.95
  --set optimizer.adam_eps=1e-8
  --set optimizer.clip_grad=1.0
  --set train.global_batch_size="${GLOBAL_BATCH}"
  --set train.micro_batch_size="${MICRO_BATCH_SIZE}"
  --set train.train_iters="${TRAIN_ITERS}"
  --set train.precision=bf16            # BioMamba SFT: bf16
  --set train.eval_interval=50          # BioMamba SFT: eval_steps 50
  --set train.eval_iters="${EVAL_ITERS}"
  --set train.seed="${SEED}"
)
LAYOUT=(
  --set parallel.tensor_model_parallel_size="${TP}"
  --set parallel.pipeline_model_parallel_size="${PP}"
  --set parallel.use_distributed_optimizer="${USE_DISTRIBUTED_OPTIMIZER}"
)

# --- dry run (DRY_RUN=1 or --dry-run: the plan only) or torchrun: examples/_launch.sh --------------------
source "${REPO_DIR}/examples/_launch.sh"
launch_torchrun tools/finetune.py "$@"
