# BioMedLM 2.7B pretraining: the recipe pretrain_2.7b.sh (torchrun) and pretrain_2.7b.sbatch (SLURM) share.
# Sourced (not run) by those launchers after they set REPO_DIR; it defines the RECIPE, LAYOUT, DATA and OUTPUTS
# argument arrays for tools/pretrain.py. Every hyperparameter of the published recipe is spelled out below as
# an explicit --set, so this file is the record of what was run.

# Data: Megatron .bin/.idx prefixes (tools/preprocess_data.py output) and the BioMedLM BPE tokenizer
# directory (examples/biomedlm/train_tokenizer.sh writes it there: the published layout, <|endoftext|> last). The weights are sampling proportions; the defaults are about the two sources' shares of The
# Pile's PubMed text (abstracts ~19 GiB, PMC full text ~90 GiB), which BioMedLM trained on.
DATA_DIR="${DATA_DIR:-/data/biomedlm}"
PUBMED_ABSTRACTS_PREFIX="${PUBMED_ABSTRACTS_PREFIX:-${DATA_DIR}/pubmed_abstracts_text_document}"
PMC_FULLTEXT_PREFIX="${PMC_FULLTEXT_PREFIX:-${DATA_DIR}/pmc_fulltext_text_document}"
PUBMED_ABSTRACTS_WEIGHT="${PUBMED_ABSTRACTS_WEIGHT:-0.18}"
PMC_FULLTEXT_WEIGHT="${PMC_FULLTEXT_WEIGHT:-0.82}"
TOKENIZER="${TOKENIZER-${DATA_DIR}/tokenizer}"
DATA_CACHE_DIR="${DATA_CACHE_DIR:-${DATA_DIR}/index_cache}"

# Outputs: checkpoints (also where a restarted or resubmitted job resumes from) and TensorBoard logs.
RUN_NAME="${RUN_NAME:-biomedlm-2.7b}"
CHECKPOINT_DIR="${CHECKPOINT_DIR:-${REPO_DIR}/runs/${RUN_NAME}/checkpoints}"
TENSORBOARD_DIR="${TENSORBOARD_DIR:-${REPO_DIR}/runs/${RUN_NAME}/tensorboard}"
SAVE_INTERVAL="${SAVE_INTERVAL:-2000}"

# --- parallel layout ---------------------------------------------------------------------------------
# 2.7B parameters fit one GPU's share with the distributed optimizer, so plain data parallelism is the
# fastest layout (DP 128 on 16 nodes: 2 micro-batches of 4 per step); TP must divide the 20 heads
# (1, 2, 4, 5, 10, 20), PP the 32 layers.
TP="${TP:-1}"
PP="${PP:-1}"
MICRO_BATCH_SIZE="${MICRO_BATCH_SIZE:-4}"
USE_DISTRIBUTED_OPTIMIZER="${USE_DISTRIBUTED_OPTIMIZER:-true}"

# --- the recipe (BioMedLM, Stanford CRFM / MosaicML) -------------------------------------------------
# Sources: "paper" = BioMedLM paper (arXiv 2403.18421); "config" = stanford-crfm/BioMedLM config.json on the
# Hugging Face Hub. The same values, with the same sources, are the biomedlm-2.7b preset
# (megatron_biomed/config/presets.py); tests/config/test_published_recipes.py checks both against its table.
RECIPE=(
  --preset biomedlm-2.7b
  # GPT-2 style decoder (config: GPT2LMHeadModel).
  --set model.num_layers=32                          # paper Table 1; config n_layer
  --set model.num_attention_heads=20                 # paper Table 1; config n_head
  --set model.hidden_size=2560                       # paper Table 1; config n_embd
  --set model.ffn_hidden_size=10240                  # config n_inner null = 4 x n_embd
  --set model.seq_length=1024                        # paper Table 1; config n_positions
  --set model.vocab_size=28896                       # paper Table 1; config vocab_size (<|endoftext|> = 28895)
  --set model.position_embedding_type=learned_absolute  # paper p. 4
  --set model.normalization=LayerNorm                # config: GPT-2 LayerNorm
  --set model.layernorm_epsilon=1e-5                 # config layer_norm_epsilon
  --set model.activation=gelu_tanh                   # config activation_function gelu_new
  --set model.add_bias_linear=true                   # config: GPT-2 linear layers with bias
  --set model.tie_embeddings=true                    # config tie_word_embeddings
  --set model.scale_attn_by_inverse_layer_idx=true   # config scale_attn_by_inverse_layer_idx
  --set model.hidden_dropout=0.1                     # config resid_pdrop, embd_pdrop
  --set model.attention_dropout=0.1                  # config attn_pdrop
  --set model.init_method_std=0.02                   # config initializer_range
  # Decoupled AdamW (Composer's): the weight decay step scales with lr / peak lr.
  --set optimizer.name=decoupled_adamw               # paper p. 6
  --set optimizer.lr=1.6e-4                          # paper Table 5
  --set optimizer.min_lr=0.0                         # our choice: none published; Composer's cosine default (alpha_f 0)
  --set optimizer.weight_decay=1.6e-5                # paper Table 5
  --set optimizer.adam_beta1=0.9                     # paper Table 5
  --set optimizer.adam_beta2=0.95                    # paper Table 5
  --set optimizer.adam_eps=1e-8                      # paper Table 5
  --set optimizer.clip_grad=1.0                      # our choice: none published
  --set optimizer.lr_decay_style=cosine              # paper Table 5
  --set optimizer.lr_warmup_iters=100                # paper Table 5: linear warmup over 100 batches
  # 1024 sequences x 1024 tokens = 1,048,576 tokens per step; 300B tokens = 286,102 steps.
  --set train.global_batch_size=1024                 # paper p. 6
  --set train.micro_batch_size="${MICRO_BATCH_SIZE}" # our choice: the layout above
  --set train.train_iters=286102                     # paper p. 5: 300B tokens
  --set train.precision=bf16                         # paper Table 6: bf16 mixed, fp32 parameters and optimizer
  --set train.eval_interval=2000                     # our choice
  --set train.eval_iters=10                          # our choice
)

LAYOUT=(
  --set parallel.tensor_model_parallel_size="${TP}"
  --set parallel.pipeline_model_parallel_size="${PP}"
  --set parallel.use_distributed_optimizer="${USE_DISTRIBUTED_OPTIMIZER}"
)

DATA=(
  --set "data.blend=${PUBMED_ABSTRACTS_WEIGHT} ${PUBMED_ABSTRACTS_PREFIX} ${PMC_FULLTEXT_WEIGHT} ${PMC_FULLTEXT_PREFIX}"
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
