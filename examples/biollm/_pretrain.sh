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
# BLEND: biollm-70b (the two prefixes above with the weights above, megatron_biomed/data/blends.py "biollm-70b")
# or biollm-70b-corpus (five sources, blends.py "biollm-70b-corpus": also set the three prefixes below; the
# CORPUS_*_WEIGHT defaults mirror that recipe, our choice of weights, its comment says why).
BLEND="${BLEND:-biollm-70b}"
CLINICAL_TRIALS_PREFIX="${CLINICAL_TRIALS_PREFIX:-${DATA_DIR}/clinical_trials_text_document}"
PATENTS_PREFIX="${PATENTS_PREFIX:-${DATA_DIR}/patents_text_document}"
CLINICAL_NOTES_PREFIX="${CLINICAL_NOTES_PREFIX:-${DATA_DIR}/clinical_notes_text_document}"
CORPUS_PUBMED_ABSTRACTS_WEIGHT="${CORPUS_PUBMED_ABSTRACTS_WEIGHT:-0.21}"
CORPUS_PMC_FULLTEXT_WEIGHT="${CORPUS_PMC_FULLTEXT_WEIGHT:-0.49}"
CORPUS_CLINICAL_TRIALS_WEIGHT="${CORPUS_CLINICAL_TRIALS_WEIGHT:-0.05}"
CORPUS_PATENTS_WEIGHT="${CORPUS_PATENTS_WEIGHT:-0.15}"
CORPUS_CLINICAL_NOTES_WEIGHT="${CORPUS_CLINICAL_NOTES_WEIGHT:-0.10}"
case "${BLEND}" in
  biollm-70b)
    DATA_BLEND="${PUBMED_ABSTRACTS_WEIGHT} ${PUBMED_ABSTRACTS_PREFIX} ${PMC_FULLTEXT_WEIGHT} ${PMC_FULLTEXT_PREFIX}" ;;
  biollm-70b-corpus)
    DATA_BLEND="${CORPUS_PUBMED_ABSTRACTS_WEIGHT} ${PUBMED_ABSTRACTS_PREFIX} ${CORPUS_PMC_FULLTEXT_WEIGHT}"
    DATA_BLEND+=" ${PMC_FULLTEXT_PREFIX} ${CORPUS_CLINICAL_TRIALS_WEIGHT} ${CLINICAL_TRIALS_PREFIX}"
    DATA_BLEND+=" ${CORPUS_PATENTS_WEIGHT} ${PATENTS_PREFIX} ${CORPUS_CLINICAL_NOTES_WEIGHT} ${CLINICAL_NOTES_PREFIX}" ;;
  *)
    echo "BLEND=${BLEND}: expected biollm-70b or biollm-70b-corpus (megatron_biomed/data/blends.py)" >&2
    return 2 2>/dev/null || exit 2 ;;
esac
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
# Sources: "Llama config" = meta-llama/Llama-2-70b-hf config.json; "LLaMA-2 paper" = arXiv 2307.09288 §2.2;
# "BioLLM issue" = this project's statement of the BioLLM-70B recipe. The same values, with the same sources,
# are the biollm-70b preset (megatron_biomed/config/presets.py), checked by tests/config/test_published_recipes.py.
RECIPE=(
  --preset biollm-70b
  --set model.num_layers=80                 # Llama config num_hidden_layers
  --set model.hidden_size=8192              # Llama config hidden_size
  --set model.num_attention_heads=64        # Llama config num_attention_heads
  --set model.num_query_groups=8            # Llama config num_key_value_heads
  --set model.ffn_hidden_size=28672         # Llama config intermediate_size
  --set model.seq_length=4096               # Llama config max_position_embeddings
  --set model.vocab_size=34000              # Llama config vocab_size 32,000 + BioLLM issue's 2,000 PubMed tokens
  --set model.position_embedding_type=rope  # LLaMA-2 paper §2.2
  --set model.rotary_base=10000             # Llama config: no rope_theta, transformers' default 10000
  --set model.normalization=RMSNorm         # LLaMA-2 paper §2.2
  --set model.layernorm_epsilon=1e-5        # Llama config rms_norm_eps
  --set model.activation=swiglu             # Llama config hidden_act silu, gated (SwiGLU, LLaMA-2 paper §2.2)
  --set model.add_bias_linear=false         # Llama config: no linear biases
  --set model.tie_embeddings=false          # Llama config tie_word_embeddings
  --set model.hidden_dropout=0.0            # Llama config: no dropout
  --set model.attention_dropout=0.0         # Llama config: no dropout
  --set model.init_method_std=0.02          # Llama config initializer_range
  --set optimizer.name=adamw                # BioLLM issue
  --set optimizer.lr=2e-5                   # BioLLM issue: peak 2e-5
  --set optimizer.min_lr=2e-6               # our choice: none given; LLaMA-2 paper §2.2 decays to 10% of the peak
  --set optimizer.lr_warmup_iters=2000      # BioLLM issue: 2,000 warmup steps
  --set optimizer.lr_decay_style=cosine     # BioLLM issue
  --set optimizer.weight_decay=0.1          # our choice: none given; LLaMA-2 paper §2.2
  --set optimizer.adam_beta1=0.9            # our choice: none given; LLaMA-2 paper §2.2
  --set optimizer.adam_beta2=0.95           # our choice: none given; LLaMA-2 paper §2.2
  --set optimizer.adam_eps=1e-5             # our choice: none given; LLaMA-2 paper §2.2
  --set optimizer.clip_grad=1.0             # our choice: none given; LLaMA-2 paper §2.2
  # 512 sequences x 4096 tokens = 2,097,152 tokens per step (BioLLM issue: ~2M-token batches on 256 GPUs).
  --set train.global_batch_size=512
  --set train.micro_batch_size="${MICRO_BATCH_SIZE}"  # our choice: the layout (_layout.sh)
  --set train.train_iters="${TRAIN_ITERS}"            # our choice: no token budget given
  --set train.precision=bf16                          # our choice: none given
  --set train.eval_interval=500                       # our choice
  --set train.eval_iters=10                           # our choice
)

DATA=(
  --set "data.blend=${DATA_BLEND}"
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
