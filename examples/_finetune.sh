# What every fine-tune launcher shares (tools/finetune.py: the BioMedLM fine-tunes, BioLLM SFT and DPO): the
# schedule computed from epochs, and the DATA and OUTPUTS argument arrays. Sourced (not run) after the launcher
# has set EPOCHS, TRAIN_ITEMS, VALID_ITEMS, GLOBAL_BATCH, WARMUP_RATIO, TRAIN_FILE, VALID_FILE, TOKENIZER,
# INIT_FROM, CHECKPOINT_DIR, TENSORBOARD_DIR, SAVE_INTERVAL and LOG_INTERVAL, and before its RECIPE, which
# uses TRAIN_ITERS, WARMUP_ITERS and EVAL_ITERS.

# --- the schedule: steps and warmup from epochs --------------------------------------------------------
# ceil(a x b / c), as the Hugging Face Trainer rounds steps and warmup (fractional EPOCHS are fine).
ceil_mul() { awk -v a="$1" -v b="$2" -v c="${3:-1}" 'BEGIN { x = a * b / c; n = int(x); if (n < x) n++; print n }'; }
TRAIN_ITERS="${TRAIN_ITERS:-$(ceil_mul "${EPOCHS}" "${TRAIN_ITEMS}" "${GLOBAL_BATCH}")}"
WARMUP_ITERS="$(ceil_mul "${WARMUP_RATIO}" "${TRAIN_ITERS}")"
# Validation runs EVAL_ITERS global batches: the whole validation split (the last batch wraps to its start).
EVAL_ITERS="$(ceil_mul 1 "${VALID_ITEMS}" "${GLOBAL_BATCH}")"
[[ -n "${VALID_FILE}" ]] || EVAL_ITERS=0

# --- data and outputs ----------------------------------------------------------------------------------
# An empty VALID_FILE: no validation split; an empty TOKENIZER: the one the checkpoint recorded.
DATA=(--train-file "${TRAIN_FILE}")
[[ -z "${VALID_FILE}" ]] || DATA+=(--valid-file "${VALID_FILE}")
[[ -z "${TOKENIZER}" ]] || DATA+=(--set "data.tokenizer=${TOKENIZER}")

# --init-from gives the weights of a fresh start; --load resumes this fine-tune once it has a checkpoint
# (for DPO also the stored reference log-probs, not recomputed from weights that have moved).
OUTPUTS=(
  --init-from "${INIT_FROM}"
  --load "${CHECKPOINT_DIR}"
  --save "${CHECKPOINT_DIR}"
  --set checkpoint.save_interval="${SAVE_INTERVAL}"
  --set "logging.tensorboard_dir=${TENSORBOARD_DIR}"
  --set logging.log_interval="${LOG_INTERVAL}"
)
