#!/usr/bin/env bash
# The README's first command. On a fresh machine: set up (virtual environment + install), then run the
# whole pipeline on bundled sample data, on CPU, in a few minutes:
#   PubMed XML -> cleaned JSONL -> byte-level BPE tokenizer -> Megatron .bin/.idx
#   -> a tiny BioMedLM-shaped GPT pretrained with tensor parallel 2 x pipeline parallel 2 on 4 torchrun ranks
#   -> checkpoint, stop, resume from it -> validation loss / perplexity -> greedy generation
#   -> a multiple-choice head fine-tuned on synthetic MedQA-style questions -> its validation accuracy.
# Outputs go to $QUICKSTART_DIR (default runs/quickstart). Extra arguments are passed to both pretraining
# runs as overrides, e.g.  bash examples/quickstart.sh --set train.train_iters=400
set -euo pipefail
cd "$(dirname "$0")/.."
# The same install as tests/run.sh (one build serves both commands, in either order). The tiny model below
# runs on model.kernels=torch, so it does not use the compiled kernels even where they were built.
source tools/setup_env.sh

OUT="${QUICKSTART_DIR:-runs/quickstart}"
NPROC=4
TP=2
PP=2
ITERS=120
mkdir -p "$OUT"
echo "== quickstart: outputs in $OUT"

echo "== 1/6 PubMed XML -> JSONL (examples/data/sample_pubmed.xml.gz: synthetic citations of our own making)"
"$PYTHON" tools/pubmed_to_jsonl.py --input examples/data/sample_pubmed.xml.gz --output-dir "$OUT/jsonl" --workers 1

echo "== 2/6 byte-level BPE tokenizer (BioMedLM recipe; small vocabulary for the small sample)"
"$PYTHON" tools/train_tokenizer.py --input "$OUT/jsonl/*.jsonl" --json-keys text --vocab-size 2048 \
  --min-frequency 2 --output-dir "$OUT/tokenizer"

echo "== 3/6 JSONL -> Megatron .bin/.idx"
"$PYTHON" tools/preprocess_data.py --input "$OUT/jsonl/*.jsonl" --json-keys text --tokenizer "$OUT/tokenizer" \
  --output-prefix "$OUT/data/pubmed" --workers 2 --append-eod --no-progress

# A tiny model of BioMedLM's family: GPT-2 blocks, LayerNorm, GELU, learned absolute positions, tied
# embeddings, decoupled AdamW.
TRAIN_ARGS=(
  --preset tiny-biomedlm
  --set model.num_layers=4 --set model.hidden_size=128 --set model.num_attention_heads=4
  --set model.seq_length=128 --set model.vocab_size=2048
  --set parallel.tensor_model_parallel_size=$TP --set parallel.pipeline_model_parallel_size=$PP
  --set train.train_iters=$ITERS --set train.global_batch_size=16 --set train.micro_batch_size=2
  --set train.eval_interval=40 --set train.eval_iters=2
  --set optimizer.lr=3e-3 --set optimizer.min_lr=3e-4 --set optimizer.lr_warmup_iters=10
  --set data.blend="$OUT/data/pubmed_text_document" --set data.tokenizer="$OUT/tokenizer"
  --set data.split=95,5,0 --set data.cache_dir="$OUT/index-cache"
  --set checkpoint.save="$OUT/checkpoints" --set checkpoint.save_interval=60 --set checkpoint.keep_last=2
  --set logging.log_interval=20 --set logging.tensorboard_dir="$OUT/tensorboard"
)
rm -rf "$OUT/checkpoints"
TORCHRUN=("$PYTHON" -m torch.distributed.run --nproc-per-node $NPROC --master-addr 127.0.0.1 --master-port "${MASTER_PORT:-29517}")
export OMP_NUM_THREADS=1

echo "== 4/6 pretrain on $NPROC CPU ranks (TP=$TP x PP=$PP): first $((ITERS / 2)) steps, then stop as if interrupted"
"${TORCHRUN[@]}" tools/pretrain.py "${TRAIN_ARGS[@]}" --set train.exit_after_iters=$((ITERS / 2)) "$@"

echo "== 4/6 resume from the checkpoint and finish $ITERS steps"
"${TORCHRUN[@]}" tools/pretrain.py "${TRAIN_ARGS[@]}" --set checkpoint.load="$OUT/checkpoints" "$@"

echo "== 5/6 greedy generation (the checkpoint saved at TP=$TP x PP=$PP, loaded into one process)"
"$PYTHON" tools/generate.py "${TRAIN_ARGS[@]}" --load "$OUT/checkpoints" --max-new-tokens 24 \
  --prompt "Patients with type 2 diabetes" --prompt "The expression of"

# Fine-tuning as examples/biomedlm/finetune_medqa.sh does it, at toy size: the model and tokenizer come from
# the pretrained checkpoint's recorded config, a fresh Linear(hidden, 1) head scores each (question, option)
# sequence; AdamW with warmup over half the steps and linear decay (BioMedLM's fine-tuning schedule).
# 80 steps of 20 questions (0.8 epoch); validation = 10 batches of 20 = the 200 held-out questions.
FT_ITERS=80
FT_ARGS=(
  --task mc --format medqa --init-from "$OUT/checkpoints"
  --train-file "$OUT/tasks/train.jsonl" --valid-file "$OUT/tasks/valid.jsonl" --save "$OUT/finetune-mc"
  --preset tiny-biomedlm
  --set task.max_seq_length=64
  --set train.train_iters=$FT_ITERS --set train.global_batch_size=20 --set train.micro_batch_size=4
  --set train.eval_interval=20 --set train.eval_iters=10
  --set optimizer.name=adamw --set optimizer.lr=1e-3 --set optimizer.min_lr=0.0 --set optimizer.weight_decay=0.0
  --set optimizer.lr_decay_style=linear --set optimizer.lr_warmup_iters=$((FT_ITERS / 2))
  --set logging.log_interval=20
)
rm -rf "$OUT/finetune-mc"
echo "== 6/6 fine-tune a multiple-choice head on the checkpoint (one process; synthetic questions of our own making)"
"$PYTHON" tools/make_sample_tasks.py --output-dir "$OUT/tasks" --num-train 2000 --num-valid 200
"$PYTHON" tools/finetune.py "${FT_ARGS[@]}" | tee "$OUT/finetune-mc.log"
ACCURACY="$(grep -o 'final validation metrics: .*accuracy [0-9.]*' "$OUT/finetune-mc.log" | grep -o '[0-9.]*$')"
echo "== quickstart done: checkpoints in $OUT/checkpoints (fine-tuned: $OUT/finetune-mc), TensorBoard logs in $OUT/tensorboard"
echo "== 6/6 validation accuracy of the fine-tuned multiple-choice head: $ACCURACY (chance: 0.25)"
