# BioLLM 70B's parallel layout, shared by its pretraining (_pretrain.sh), SFT and DPO launchers: the TP, PP,
# VPP, SEQUENCE_PARALLEL, MICRO_BATCH_SIZE and USE_DISTRIBUTED_OPTIMIZER defaults and the LAYOUT argument
# array. Sourced (not run).
#
# TP 8 inside a node (divides the 64 heads and the 8 KV groups), PP 4 across nodes (20 layers per stage),
# DP = world / 32 (8 at 256 GPUs), sequence parallel with TP, distributed optimizer over DP.
# VPP (interleaved pipeline chunks per stage) must divide 80 / PP layers; empty = plain 1F1B.
TP="${TP:-8}"
PP="${PP:-4}"
VPP="${VPP-}"
SEQUENCE_PARALLEL="${SEQUENCE_PARALLEL:-true}"
# One sequence per micro-batch (for DPO one pair: chosen and rejected travel together through the pipeline).
MICRO_BATCH_SIZE="${MICRO_BATCH_SIZE:-1}"
USE_DISTRIBUTED_OPTIMIZER="${USE_DISTRIBUTED_OPTIMIZER:-true}"

LAYOUT=(
  --set parallel.tensor_model_parallel_size="${TP}"
  --set parallel.pipeline_model_parallel_size="${PP}"
  --set "parallel.virtual_pipeline_model_parallel_size=${VPP}"
  --set parallel.sequence_parallel="${SEQUENCE_PARALLEL}"
  --set parallel.use_distributed_optimizer="${USE_DISTRIBUTED_OPTIMIZER}"
)
