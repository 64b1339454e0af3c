#!/usr/bin/env bash
# The GPU check in one command (under 8 minutes on one H100/H200): environment and bf16 GEMM peak, the CUDA
# extension built for this GPU in the background, our kernels against PyTorch, flash attention against SDPA
# (flash, cuDNN) and Transformer Engine, a ~110M and a ~1.3B GPT per attention backend. See gpu_check.py.
#
#   bash benchmarks/gpu_check.sh [--backends csrc,sdpa,te,auto] [--dry-run] [...]   # results in $OUT
#
# Python: $PYTHON, else the machine's python3 (a GPU machine's own torch). On a machine without a package
# registry, install first with tools/install_offline.sh --wheels DIR (README: "Installing on a GPU machine
# without a package registry"); its --target folder is put on PYTHONPATH here when MEGATRON_BIOMED_SITE is set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ -n "${MEGATRON_BIOMED_SITE:-}" ]; then
  export PYTHONPATH="$MEGATRON_BIOMED_SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT_DIR="${OUT:-runs/gpu_check}"
mkdir -p "$OUT_DIR"
exec "$PY" benchmarks/gpu_check.py --out "$OUT_DIR" "$@"
