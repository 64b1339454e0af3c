#!/usr/bin/env bash
# BioMedLM 2.7B fine-tuned on BioASQ yes/no questions with a sequence-classification head, with
# torchrun on one node of 8 GPUs by default (as BioMedLM's own fine-tuning ran: one node, 8 processes).
#
#   INIT_FROM=runs/biomedlm-2.7b/checkpoints bash examples/biomedlm/finetune_bioasq.sh
#   DRY_RUN=1 bash examples/biomedlm/finetune_bioasq.sh        # print the plan only (no GPU, no torchrun)
#   TRAIN_FILE=training7b.json VALID_FILE= bash examples/biomedlm/finetune_bioasq.sh  # no dev split
#
# The model (architecture and tokenizer) is read from the pretrained checkpoint's run_config.yaml; until that
# checkpoint exists (a dry run on a laptop) it comes from --preset biomedlm-2.7b. Every hyperparameter is
# spelled out below as an explicit --set with where it comes from, so this file is the record of what was
# run; arguments given to this script are appended last and win (a --set train.train_iters does not move the
# warmup: set EPOCHS or TRAIN_ITERS instead).
#
# Sources. [BioMedLM code] = stanford-crfm/BioMedLM finetune/README.md (the seqcls/run_seqcls_gpt.py command)
# and finetune/seqcls/preprocess_blurb_seqcls.py (BLURB's splits): warmup_ratio 0.5, bf16, a per-device
# batch of 1, no evaluation during training, log every 100 steps, and the Hugging Face Trainer defaults it
# leaves alone (AdamW with betas 0.9/0.999, eps 1e-8, weight decay 0, linear decay to 0, gradient clipping at
# 1.0). Its learning rate, epochs, gradient accumulation and sequence length are grid placeholders ({lr},
# {num_epochs}, {grad_accum}, {seq_len}); the values the paper reports (Bolton et al. 2024) were not
# available to us, so those are marked "our choice" and are the first things to sweep.
set -euo pipefail

# --- where things are --------------------------------------------------------------------------------
REPO_DIR="${REPO_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
PYTHON="${PYTHON:-python}"
# A command, word-split on purpose: e.g. TORCHRUN="python -m torch.distributed.run".
TORCHRUN="${TORCHRUN:-torchrun}"

# Data: BioASQ Task B questions as a golden JSON file ({"questions": [...]}) or JSONL; only the yes/no
# questions are kept (the others are counted as skipped), with their snippets as the context. The defaults
# name BLURB's split of the Task 7b yes/no questions (the split BioMedLM code prepares), written as JSONL.
DATA_DIR="${DATA_DIR:-/data/bioasq}"
TRAIN_FILE="${TRAIN_FILE:-${DATA_DIR}/train.jsonl}"
VALID_FILE="${VALID_FILE-${DATA_DIR}/dev.jsonl}"
# The pretrained checkpoint (pretrain_2.7b.sh's CHECKPOINT_DIR); weights only, the head starts fresh.
INIT_FROM="${INIT_FROM:-${REPO_DIR}/runs/biomedlm-2.7b/checkpoints}"
# Empty: the tokenizer the checkpoint recorded (data.tokenizer in its run_config.yaml).
TOKENIZER="${TOKENIZER-}"

# Outputs: checkpoints (also where a restarted run resumes from) and TensorBoard logs.
RUN_NAME="${RUN_NAME:-biomedlm-2.7b-bioasq}"
CHECKPOINT_DIR="${CHECKPOINT_DIR:-${REPO_DIR}/runs/${RUN_NAME}/checkpoints}"
TENSORBOARD_DIR="${TENSORBOARD_DIR:-${REPO_DIR}/runs/${RUN_NAME}/tensorboard}"
SAVE_INTERVAL="${SAVE_INTERVAL:-0}"  # 0: one checkpoint, at the end (the run is short)

# --- the machines ------------------------------------------------------------------------------------
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"
NPROC_PER_NODE="${NPROC_PER_NODE:-8}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
MASTER_PORT="${MASTER_PORT:-29500}"
WORLD_SIZE_PLANNED=$((NNODES * NPROC_PER_NODE))

# --- parallel layout ---------------------------------------------------------------------------------
# Plain data parallelism (DP 8): 2.7B fits one GPU with the distributed optimizer. TP must divide the 20
# heads (1, 2, 4, 5, 10, 20), PP the 32 layers. A micro-batch of 1 item (BioMedLM code) is 1 sequence.
TP="${TP:-1}"
PP="${PP:-1}"
MICRO_BATCH_SIZE="${MICRO_BATCH_SIZE:-1}"
USE_DISTRIBUTED_OPTIMIZER="${USE_DISTRIBUTED_OPTIMIZER:-true}"

# --- the schedule: steps and warmup from epochs --------------------------------------------------------
# TRAIN_ITEMS / VALID_ITEMS: yes/no questions in the splits. Default: BLURB's BioASQ split (Gu et al.
# 2021, the one BioMedLM code reads): 670 train, 75 dev, 140 test. Set TRAIN_ITEMS to the yes/no count
# the fine-tune logs at start ("train data: read N items from ...") when training on another Task B release.
TRAIN_ITEMS="${TRAIN_ITEMS:-670}"
VALID_ITEMS="${VALID_ITEMS:-75}"
EPOCHS="${EPOCHS:-20}"                # our choice (BioMedLM code: grid placeholder {num_epochs})
GLOBAL_BATCH="${GLOBAL_BATCH:-16}"    # our choice (BioMedLM code: 8 devices x 1 x {grad_accum})
LR="${LR:-2e-5}"                      # our choice (BioMedLM code: grid placeholder {lr})
WARMUP_RATIO="${WARMUP_RATIO:-0.5}"   # BioMedLM code: --warmup_ratio 0.5
SEED="${SEED:-1234}"
# ceil(a x b / c), as the Hugging Face Trainer rounds steps and warmup (fractional EPOCHS are fine).
ceil_mul() { awk -v a="$1" -v b="$2" -v c="${3:-1}" 'BEGIN { x = a * b / c; n = int(x); if (n < x) n++; print n }'; }
TRAIN_ITERS="${TRAIN_ITERS:-$(ceil_mul "${EPOCHS}" "${TRAIN_ITEMS}" "${GLOBAL_BATCH}")}"
WARMUP_ITERS="$(ceil_mul "${WARMUP_RATIO}" "${TRAIN_ITERS}")"
# Validation runs EVAL_ITERS global batches: the whole dev split (the last batch wraps to its start).
EVAL_ITERS="$(ceil_mul 1 "${VALID_ITEMS}" "${GLOBAL_BATCH}")"
[[ -n "${VALID_FILE}" ]] || EVAL_ITERS=0

# --- the recipe --------------------------------------------------------------------------------------
RECIPE=(
  --task classify
  --format bioasq
  --preset biomedlm-2.7b
  # One sequence per item: "{context} {question}", the question last so that truncation from the left
  # cuts the start of a long context, never the question; 1024 tokens, the model's whole context (our
  # choice: BioMedLM code's {seq_len} is a placeholder), so abstracts are rarely cut. A Linear(hidden,
  # 2, bias=False) head on the last token (GPT2ForSequenceClassification, as in BioMedLM code).
  --set task.max_seq_length=1024
  --set task.prompt_template=biomedlm
  --set task.num_labels=2
  # AdamW with the Hugging Face Trainer's defaults (BioMedLM code sets none of them): linear warmup over
  # half the steps (warmup_ratio 0.5 -> WARMUP_ITERS), then linear decay to 0.
  --set optimizer.name=adamw
  --set optimizer.lr="${LR}"
  --set optimizer.min_lr=0.0
  --set optimizer.lr_decay_style=linear
  --set optimizer.lr_warmup_iters="${WARMUP_ITERS}"
  --set optimizer.weight_decay=0.0
  --set optimizer.adam_beta1=0.9
  --set optimizer.adam_beta2=0.999
  --set optimizer.adam_eps=1e-8
  --set optimizer.clip_grad=1.0
  # GLOBAL_BATCH items per step, EPOCHS x TRAIN_ITEMS / GLOBAL_BATCH steps; bf16 (BioMedLM code); no
  # evaluation during training (BioMedLM code: --evaluation_strategy no), the dev split at the end.
  --set train.global_batch_size="${GLOBAL_BATCH}"
  --set train.micro_batch_size="${MICRO_BATCH_SIZE}"
  --set train.train_iters="${TRAIN_ITERS}"
  --set train.precision=bf16
  --set train.eval_interval=0
  --set train.eval_iters="${EVAL_ITERS}"
  --set train.seed="${SEED}"
)

LAYOUT=(
  --set parallel.tensor_model_parallel_size="${TP}"
  --set parallel.pipeline_model_parallel_size="${PP}"
  --set parallel.use_distributed_optimizer="${USE_DISTRIBUTED_OPTIMIZER}"
)

DATA=(--train-file "${TRAIN_FILE}")
[[ -z "${VALID_FILE}" ]] || DATA+=(--valid-file "${VALID_FILE}")
[[ -z "${TOKENIZER}" ]] || DATA+=(--set "data.tokenizer=${TOKENIZER}")

# --init-from gives the weights of a fresh start; --load resumes this fine-tune once it has a checkpoint.
OUTPUTS=(
  --init-from "${INIT_FROM}"
  --load "${CHECKPOINT_DIR}"
  --save "${CHECKPOINT_DIR}"
  --set checkpoint.save_interval="${SAVE_INTERVAL}"
  --set "logging.tensorboard_dir=${TENSORBOARD_DIR}"
  --set logging.log_interval=100
)

# --- dry run: print the plan for WORLD_SIZE_PLANNED ranks and stop ------------------------------------
DRY=0
[[ "${DRY_RUN:-0}" == "1" ]] && DRY=1
for arg in "$@"; do [[ "$arg" == "--dry-run" ]] && DRY=1; done

cd "${REPO_DIR}"
if [[ "${DRY}" == "1" ]]; then
  extra=()
  [[ " $* " == *" --dry-run "* ]] || extra=(--dry-run)
  exec "${PYTHON}" tools/finetune.py "${RECIPE[@]}" "${LAYOUT[@]}" "${DATA[@]}" "${OUTPUTS[@]}" \
    --world-size "${WORLD_SIZE_PLANNED}" "${extra[@]}" "$@"
fi

# --- train ---------------------------------------------------------------------------------------------
mkdir -p "${CHECKPOINT_DIR}" "${TENSORBOARD_DIR}"
exec ${TORCHRUN} --nnodes "${NNODES}" --node-rank "${NODE_RANK}" --nproc-per-node "${NPROC_PER_NODE}" \
  --master-addr "${MASTER_ADDR}" --master-port "${MASTER_PORT}" \
  tools/finetune.py "${RECIPE[@]}" "${LAYOUT[@]}" "${DATA[@]}" "${OUTPUTS[@]}" "$@"
