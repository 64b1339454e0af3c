# BioLLM 70B pretraining: the recipe pretrain_70b.sh (torchrun) and pretrain_70b.sbatch (SLURM) share.
# Sourced (not run) by those launchers after they set REPO_DIR; it defines the RECIPE, LAYOUT (_layout.sh),
# DATA and OUTPUTS argument arrays for tools/pretrain.py. Every hyperparameter of the recipe is spelled out
# below as an explicit --set, so this file is the record of what was run.

# Data: Megatron .bin/.idx prefixes tokenized with the extended LLaMA-2 tokenizer (32,000 + 2,000
# tokens, tools/extend_vocab.py), and that tokenizer's directory. Weights are sampling proportions.
DATA_DIR="${DATA_DIR:-/data/biollm}"
PUBMED_ABSTRACTS_PREFIX="${PUBMED_ABSTRACTS_PREFIX:-${DATA_DIR}/pubmed_abstracts_text_document}"
PMC_FULLTEXT_PREFIX="${PMC_FULLTEXT_PREFIX:-${DATA_DIR}/pmc_fulltext_text_document}"
PUBMED_ABSTRACTS_WEIGHT="${PUBMED_ABSTRACTS_WEIGHT:-0.3}"
PMC_FULLTEXT_WEIGHT="${PMC_FULLTEXT_WEIGHT:-0.7}"
TOKENIZER="${TOKENIZER-${DATA_DIR}/tokenizer}"
DATA_CACHE_DIR="${DATA_CACHE_DIR:-${DATA_DIR}/index_cache}"
# Continued pretraining starts from converted LLaMA-2-70B weights (a dist checkpoint directory);
# empty = from scratch. A checkpoint in CHECKPOINT_DIR (a restarted run) takes precedence.
INIT_FROM="${INIT_FROM-}"

# Outputs: checkpoints (also where a restarted or resubmitted job resumes from) and TensorBoard logs.
RUN_NAME="${RUN_NAME:-biollm-70b}"
CHECKPOINT_DIR="${CHECKPOINT_DIR:-${REPO_DIR}/runs/${RUN_NAME}/checkpoints}"
TENSORBOARD_DIR="${TENSORBOARD_DIR:-${REPO_DIR}/runs/${RUN_NAME}/tensorboard}"
SAVE_INTERVAL="${SAVE_INTERVAL:-500}"

# --- parallel layout: TP 8 x PP 4 per model replica ------------------------------------------------------
# shellcheck source=_layout.sh
source "${REPO_DIR}/examples/biollm/_layout.sh"
# Steps: 10,000 x 2,097,152 tokens = ~21B tokens; set for your token budget.
TRAIN_ITERS="${TRAIN_ITERS:-10000}"

# --- the recipe (LLaMA-2-70B architecture and optimizer) --------------------------------------------
RECIPE=(
  --preset biollm-70b
  # LLaMA-2-70B: 80 layers, hidden 8192, 64 heads with grouped-query attention over 8 KV heads,
  # SwiGLU FFN 28672, RMSNorm, RoPE (base 10000), no biases, untied output layer, 4096 context,
  # vocabulary 32,000 + 2,000 biomedical tokens.
  --set model.num_layers=80
  --set model.hidden_size=8192
  --set model.num_attention_heads=64
  --set model.num_query_groups=8
  --set model.ffn_hidden_size=28672
  --set model.seq_length=4096
  --set model.vocab_size=34000
  --set model.position_embedding_type=rope
  --set model.rotary_base=10000
  --set model.normalization=RMSNorm
  --set model.layernorm_epsilon=1e-5
  --set model.activation=swiglu
  --set model.add_bias_linear=false
  --set model.tie_embeddings=false
  --set model.hidden_dropout=0.0
  --set model.attention_dropout=0.0
  # AdamW, peak lr 2e-5 after 2,000 linear warmup steps, cosine decay to 10% of the peak.
  --set optimizer.name=adamw
  --set optimizer.lr=2e-5
  --set optimizer.min_lr=2e-6
  --set optimizer.lr_warmup_iters=2000
  --set optimizer.lr_decay_style=cosine
  --set optimizer.weight_decay=0.1
  --set optimizer.adam_beta1=0.9
  --set optimizer.adam_beta2=0.95
  --set optimizer.adam_eps=1e-5
  --set optimizer.clip_grad=1.0
  # 512 sequences x 4096 tokens = 2,097,152 tokens per step; bf16.
  --set train.global_batch_size=512
  --set train.micro_batch_size="${MICRO_BATCH_SIZE}"
  --set train.train_iters="${TRAIN_ITERS}"
  --set train.precision=bf16
  --set train.eval_interval=500
  --set train.eval_iters=10
)

DATA=(
  --set "data.blend=${PUBMED_ABSTRACTS_WEIGHT} ${PUBMED_ABSTRACTS_PREFIX} ${PMC_FULLTEXT_WEIGHT} ${PMC_FULLTEXT_PREFIX}"
  --set "data.tokenizer=${TOKENIZER}"
  --set "data.cache_dir=${DATA_CACHE_DIR}"
)

OUTPUTS=(
  --set "checkpoint.save=${CHECKPOINT_DIR}"
  --set "checkpoint.load=${CHECKPOINT_DIR}"
  --set "checkpoint.init_from=${INIT_FROM}"
  --set checkpoint.save_interval="${SAVE_INTERVAL}"
  --set "logging.tensorboard_dir=${TENSORBOARD_DIR}"
  --set logging.log_interval=1
)
