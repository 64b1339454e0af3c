# BioMedLM 2.7B fine-tuning: the part every examples/biomedlm/finetune_<task>.sh shares. Sourced (not run) by
# those launchers after they set REPO_DIR, their data files, RUN_NAME, the split sizes and schedule defaults
# (TRAIN_ITEMS, VALID_ITEMS, EPOCHS, GLOBAL_BATCH, SAVE_INTERVAL, EVAL_INTERVAL, LOG_INTERVAL) and TASK_ARGS
# (the task, its data format and its task.* settings). It then runs the fine-tune (torchrun) or, with
# DRY_RUN=1 or --dry-run, prints the plan; the launcher's own arguments come last and win (a --set
# train.train_iters does not move the warmup: set EPOCHS or TRAIN_ITERS instead).
#
# The model (architecture and tokenizer) is read from the pretrained checkpoint's run_config.yaml; until that
# checkpoint exists (a dry run on a laptop) it comes from --preset biomedlm-2.7b. Every hyperparameter is
# spelled out as an explicit --set with where it comes from (here and in the task's file), so these files
# record what was run.
#
# Shared settings. [BioMedLM code] = stanford-crfm/BioMedLM finetune/: warmup_ratio 0.5, bf16, and the
# Hugging Face Trainer defaults its scripts leave alone (AdamW with betas 0.9/0.999, eps 1e-8, weight decay 0,
# linear decay to 0, gradient clipping at 1.0). Its learning rate, epochs, batch size (and for classification
# the sequence length) are grid placeholders ({lr}, {epochs}, {grad_accum}, {seq_len}); the values the paper
# reports (Bolton et al. 2024) were not available to us, so those are marked "our choice" and are the first
# things to sweep.

# The input format (finetune/formats.py; the task launcher picks BioMedLM's) and the checkpoint to start from:
# the pretrained model with that format's added tokens (prepare_finetune_vocab.sh makes it from pretrain_2.7b.sh's
# checkpoint or the released HF model; ADDED_TOKENS, mc or seqcls, is set by the task launcher); weights only,
# the head starts fresh (add --init-with-head to continue a fine-tune with its head: finetune_medqa_from_medmcqa.sh).
INPUT_FORMAT="${INPUT_FORMAT:-plain}"
INIT_FROM="${INIT_FROM:-${REPO_DIR}/runs/biomedlm-2.7b-vocab-${ADDED_TOKENS}/checkpoints}"
# Empty: the tokenizer the checkpoint recorded (data.tokenizer in its run_config.yaml).
TOKENIZER="${TOKENIZER-}"

# Outputs: checkpoints (also where a restarted run resumes from) and TensorBoard logs.
CHECKPOINT_DIR="${CHECKPOINT_DIR:-${REPO_DIR}/runs/${RUN_NAME}/checkpoints}"
TENSORBOARD_DIR="${TENSORBOARD_DIR:-${REPO_DIR}/runs/${RUN_NAME}/tensorboard}"

# --- parallel layout (one node of 8 GPUs by default: examples/_launch.sh) ------------------------------
# Plain data parallelism (DP 8): 2.7B fits one GPU with the distributed optimizer. TP must divide the 20
# heads (1, 2, 4, 5, 10, 20), PP the 32 layers. A micro-batch of 1 item (BioMedLM code: a per-device batch of
# 1) is 1 sequence for classification, one per option for multiple choice.
TP="${TP:-1}"
PP="${PP:-1}"
MICRO_BATCH_SIZE="${MICRO_BATCH_SIZE:-1}"
USE_DISTRIBUTED_OPTIMIZER="${USE_DISTRIBUTED_OPTIMIZER:-true}"

# --- the schedule: steps and warmup from epochs (examples/_finetune.sh) ----------------------------------
LR="${LR:-2e-5}"                      # our choice (BioMedLM code: grid placeholder {lr})
WARMUP_RATIO="${WARMUP_RATIO:-0.5}"   # BioMedLM code: --warmup_ratio 0.5
SEED="${SEED:-1234}"
# shellcheck source=../_finetune.sh
source "${REPO_DIR}/examples/_finetune.sh"

# --- the recipe --------------------------------------------------------------------------------------
RECIPE=(
  "${TASK_ARGS[@]}"
  --preset biomedlm-2.7b
  --set task.input_format="${INPUT_FORMAT}"
  --set task.prompt_template=biomedlm
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
  # GLOBAL_BATCH items per step, EPOCHS x TRAIN_ITEMS / GLOBAL_BATCH steps; bf16 (BioMedLM code).
  --set train.global_batch_size="${GLOBAL_BATCH}"
  --set train.micro_batch_size="${MICRO_BATCH_SIZE}"
  --set train.train_iters="${TRAIN_ITERS}"
  --set train.precision=bf16
  --set train.eval_interval="${EVAL_INTERVAL}"
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
