# BioMamba continued pretraining: the recipe continue_pretrain.sh (torchrun) and continue_pretrain.sbatch (SLURM)
# share, for every size. Sourced (not run) by those launchers after they set SIZE (their first argument) and
# REPO_DIR; it checks SIZE against the table below before anything else, then defines MICRO_BATCH_SIZE,
# SIZE_NODES and the RECIPE, LAYOUT, DATA and OUTPUTS argument arrays for tools/pretrain.py.
#
# The run: a public state-spaces/mamba2-<size> checkpoint (mamba_ssm format, imported once into a megatron-core
# dist checkpoint: INIT_FROM) continued on the 80/10/10 PubMed / C4 / Wikipedia blend of
# megatron_biomed/data/blends.py ("biomamba"), with the GPT-NeoX-20B tokenizer the checkpoints were trained
# with (50,277 tokens, the embedding padded to a multiple of 16 = 50,288 rows as in the checkpoints), and the
# loss and perplexity of each corpus's validation set reported separately at every eval interval.
#
# The optimizer, schedule, batch and samples are the authors' own (LeoYML/BioMamba @ e61db22; each value's
# source is in megatron_biomed/config/presets.py, BIOMAMBA_RUNS and the biomamba() preset): AdamW (betas 0.9 /
# 0.95, wd 0.1, clip 1.0) at lr 5e-6 for every size, warmup-stable-decay (10% linear warmup, 65% plateau, cosine
# decay to 0.1 x lr over the rest), 3 epochs of ~509K documents, layer-wise lr decay (0.9 for 130m, 0.95 for
# the others), an EMA of the weights (decay 0.999; validation uses it), one document per sequence of at most
# 1,024 tokens, padded, the padding out of the loss, the authors' effective batch per size, bf16.

# The sizes: the public checkpoints' layers and hidden size, the authors' effective batch (global-batch: their
# batch x accumulation x GPUs), layer-wise lr decay, and the steps of their schedule for that batch
# (train-iters, warmup, wsd-decay: megatron_biomed/config/presets.py biomamba_schedule) -- all the
# biomamba-<size> presets' values, spelled out below as --set like every other one -- then ours: the default
# micro-batch per GPU (MICRO_BATCH_SIZE) and the nodes of 8 GPUs the SLURM launcher plans for (NNODES outside
# SLURM; submit with sbatch --nodes=<nodes>); global-batch = micro-batch x 8 GPUs x nodes x micro-batches per step.
BIOMAMBA_SIZES="
# size  layers  hidden  global-batch  layer-lr-decay  train-iters  warmup  wsd-decay  micro-batch  nodes
  130m  24      768     256           0.9             5964         596     1492       16           1
  370m  48      1024    240           0.95            6360         636     1590       6            1
  780m  48      1536    256           0.95            5964         596     1492       8            2
  1.3b  48      2048    256           0.95            5964         596     1492       4            4
  2.7b  64      2560    192           0.95            7950         795     1988       4            3
"
size_row="$(awk -v size="${SIZE}" '$1 == size && $1 !~ /^#/' <<< "${BIOMAMBA_SIZES}")"
if [[ -z "${SIZE}" || -z "${size_row}" ]]; then
  echo "error: $0 takes the size as its first argument, one of" \
    "$(awk '$1 !~ /^(#|$)/ { printf "%s%s", sep, $1; sep = ", " }' <<< "${BIOMAMBA_SIZES}") (got '${SIZE}')" >&2
  exit 2
fi
read -r _ NUM_LAYERS HIDDEN GLOBAL_BATCH LAYER_LR_DECAY TRAIN_ITERS WARMUP WSD_DECAY size_micro_batch SIZE_NODES \
  <<< "${size_row}"
MICRO_BATCH_SIZE="${MICRO_BATCH_SIZE:-${size_micro_batch}}"

# Data: Megatron .bin/.idx prefixes (tools/preprocess_data.py with the GPT-NeoX-20B tokenizer) of each corpus'
# training and held-out validation text, and the tokenizer directory (EleutherAI/gpt-neox-20b).
DATA_DIR="${DATA_DIR:-/data/biomamba}"
PUBMED_PREFIX="${PUBMED_PREFIX:-${DATA_DIR}/pubmed_text_document}"
C4_PREFIX="${C4_PREFIX:-${DATA_DIR}/c4_en_text_document}"
WIKIPEDIA_PREFIX="${WIKIPEDIA_PREFIX:-${DATA_DIR}/wikipedia_en_text_document}"
PUBMED_VALID_PREFIX="${PUBMED_VALID_PREFIX:-${DATA_DIR}/pubmed_valid_text_document}"
C4_VALID_PREFIX="${C4_VALID_PREFIX:-${DATA_DIR}/c4_en_valid_text_document}"
WIKIPEDIA_VALID_PREFIX="${WIKIPEDIA_VALID_PREFIX:-${DATA_DIR}/wikipedia_en_valid_text_document}"
TOKENIZER="${TOKENIZER-${DATA_DIR}/gpt-neox-20b}"
DATA_CACHE_DIR="${DATA_CACHE_DIR:-${DATA_DIR}/index_cache}"
# The public checkpoint, imported into a megatron-core dist checkpoint (mamba_ssm key names -> ours).
INIT_FROM="${INIT_FROM-${DATA_DIR}/checkpoints/mamba2-${SIZE}}"

RUN_NAME="${RUN_NAME:-biomamba-${SIZE}}"
CHECKPOINT_DIR="${CHECKPOINT_DIR:-${REPO_DIR}/runs/${RUN_NAME}/checkpoints}"
TENSORBOARD_DIR="${TENSORBOARD_DIR:-${REPO_DIR}/runs/${RUN_NAME}/tensorboard}"
SAVE_INTERVAL="${SAVE_INTERVAL:-1000}"

# TP stays 1: the public checkpoints have one B/C group (ngroups = 1), which cannot be split over TP ranks
# (parallel/layout.py refuses it); scale with data parallelism, the distributed optimizer and PP.
TP="${TP:-1}"
PP="${PP:-1}"
USE_DISTRIBUTED_OPTIMIZER="${USE_DISTRIBUTED_OPTIMIZER:-true}"

RECIPE=(
  --preset "biomamba-${SIZE}"
  # Mamba2 (mamba_ssm defaults, as the checkpoints): state 128, head dim 64, expand 2, one B/C group, conv 4,
  # chunk 256; RMSNorm, no biases, tied embeddings, no positions.
  --set model.family=mamba2
  --set model.num_layers="${NUM_LAYERS}"
  --set model.hidden_size="${HIDDEN}"
  --set model.num_attention_heads=$((2 * HIDDEN / 64))
  --set model.mamba_state_dim=128
  --set model.mamba_head_dim=64
  --set model.mamba_expand=2
  --set model.mamba_num_groups=1
  --set model.mamba_conv_kernel=4
  --set model.mamba_chunk_size=256
  --set model.seq_length=1024
  --set model.vocab_size=50277
  --set model.make_vocab_size_divisible_by=16
  --set model.tie_embeddings=true
  --set model.hidden_dropout=0.0
  --set optimizer.name=adamw
  --set optimizer.lr=5e-6
  --set optimizer.min_lr=5e-7
  --set optimizer.weight_decay=0.1
  --set optimizer.adam_beta1=0.9
  --set optimizer.adam_beta2=0.95
  --set optimizer.adam_eps=1e-8
  --set optimizer.clip_grad=1.0
  --set optimizer.lr_decay_style=WSD
  --set optimizer.lr_warmup_iters="${WARMUP}"
  --set optimizer.lr_wsd_decay_iters="${WSD_DECAY}"
  --set optimizer.lr_wsd_decay_style=cosine
  --set optimizer.layer_lr_decay="${LAYER_LR_DECAY}"
  --set optimizer.ema_decay=0.999
  --set optimizer.ema_eval=true
  --set data.sample_layout=document
  --set train.global_batch_size="${GLOBAL_BATCH}"
  --set train.micro_batch_size="${MICRO_BATCH_SIZE}"
  --set train.train_iters="${TRAIN_ITERS}"
  --set train.precision=bf16
  --set train.eval_interval=500
  --set train.eval_iters=20
)

LAYOUT=(
  --set parallel.tensor_model_parallel_size="${TP}"
  --set parallel.pipeline_model_parallel_size="${PP}"
  --set parallel.use_distributed_optimizer="${USE_DISTRIBUTED_OPTIMIZER}"
)

# 80/10/10 (megatron_biomed/data/blends.py "biomamba"; tests/examples check these weights against it).
DATA=(
  --set "data.blend=0.8 ${PUBMED_PREFIX} 0.1 ${C4_PREFIX} 0.1 ${WIKIPEDIA_PREFIX}"
  --set "train.eval_corpora=pubmed=${PUBMED_VALID_PREFIX} c4=${C4_VALID_PREFIX} wikipedia=${WIKIPEDIA_VALID_PREFIX}"
  --set "data.tokenizer=${TOKENIZER}"
  --set "data.cache_dir=${DATA_CACHE_DIR}"
)

OUTPUTS=(
  --set "checkpoint.save=${CHECKPOINT_DIR}"
  --set "checkpoint.load=${CHECKPOINT_DIR}"
  --set checkpoint.save_interval="${SAVE_INTERVAL}"
  --set "logging.tensorboard_dir=${TENSORBOARD_DIR}"
  --set logging.log_interval=10
)
# Start from the public weights; a restarted job resumes from CHECKPOINT_DIR instead (checkpoint.load wins).
[[ -z "${INIT_FROM}" ]] || OUTPUTS+=(--set "checkpoint.init_from=${INIT_FROM}")
