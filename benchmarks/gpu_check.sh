#!/usr/bin/env bash
# The GPU check in one command (under 8 minutes on one H100/H200): environment and bf16 GEMM peak, the CUDA
# extension built for this GPU in the background, our kernels against PyTorch, flash attention against SDPA
# (flash, cuDNN) and Transformer Engine, a ~110M and a ~1.3B GPT per attention backend. See gpu_check.py.
#
#   bash benchmarks/gpu_check.sh [--backends csrc,sdpa,te,auto] [--dry-run] [...]   # results in $OUT
#
# Python: $PYTHON, else the machine's python3 (a GPU machine's own torch). On a machine without a package
# registry, give the wheel folder (README: "Installing on a GPU machine without a package registry"):
#   MEGATRON_BIOMED_WHEELS=DIR bash benchmarks/gpu_check.sh
# installs the wheels first (tools/install_offline.sh --no-project, into $MEGATRON_BIOMED_SITE, default
# .offline-site; seconds) and the check's own build step builds the checkout for this GPU in the background.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ -n "${MEGATRON_BIOMED_WHEELS:-}" ]; then
  MEGATRON_BIOMED_SITE="${MEGATRON_BIOMED_SITE:-$PWD/.offline-site}"
  PYTHON="$PY" bash tools/install_offline.sh --wheels "$MEGATRON_BIOMED_WHEELS" --target "$MEGATRON_BIOMED_SITE" --no-project
fi
if [ -n "${MEGATRON_BIOMED_SITE:-}" ]; then
  export PYTHONPATH="$MEGATRON_BIOMED_SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT_DIR="${OUT:-runs/gpu_check}"
mkdir -p "$OUT_DIR"
exec "$PY" benchmarks/gpu_check.py --out "$OUT_DIR" "$@"
