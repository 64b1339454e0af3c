#!/usr/bin/env bash
# Fill a folder with the wheels tools/install_offline.sh installs on a GPU machine without a package registry:
# megatron-core==0.19.2 and the pure-Python packages the project imports at run time, for CPython 3.12 on
# x86-64 Linux (manylinux), WITHOUT torch, triton, numpy or the nvidia-* CUDA wheels (the machine has its own).
# Run it where the package registry is reachable, then carry the folder over.
#
#   tools/collect_wheels.sh DIR [--all] [--platform TAG]... [--python-version 3.12]
#
#   (default)  what training, generation and the GPU check import (requirements.txt's run-time part)
#   --all      also the data, tokenizer and evaluation tools' dependencies (the rest of requirements.txt;
#              a package published only as a source archive is built into a wheel here)
# Versions: pinned to the ones installed in $PYTHON's environment (the tested set) where present.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
DEST=""
ALL=0
PYVER="3.12"
PLATFORMS=()

_die() { echo "collect_wheels: error: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --all) ALL=1; shift ;;
    --platform) PLATFORMS+=("${2:?--platform needs a tag}"); shift 2 ;;
    --python-version) PYVER="${2:?}"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) _die "unknown argument '$1' (see --help)" ;;
    *) [ -z "$DEST" ] || _die "one folder only (got '$DEST' and '$1')"; DEST="$1"; shift ;;
  esac
done
[ -n "$DEST" ] || _die "usage: tools/collect_wheels.sh DIR [--all]"
[ "${#PLATFORMS[@]}" -gt 0 ] || PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64)
mkdir -p "$DEST"

# megatron-core declares torch and numpy: it is downloaded alone (--no-deps) with its one other dependency.
CORE=("megatron-core==0.19.2" packaging)
# What `import megatron_biomed` and tools/pretrain.py reach at run time besides torch/numpy (requirements.txt),
# plus pybind11 (setup.py builds the CPU emulator module with it) and setuptools/wheel (for --no-build-isolation).
RUNTIME=(psutil pyyaml einops tqdm safetensors tokenizers tensorboard pybind11 setuptools wheel)
# The data / tokenizer / evaluation tools (requirements.txt's remainder).
TOOLS=(nltk lxml datasketch gigatoken rouge-score seqeval scikit-learn)

# Pins: the versions of this environment (pip freeze), minus the machine-provided stack.
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
"$PY" -m pip freeze --exclude-editable 2>/dev/null | grep -v ' @ ' \
  | grep -viE '^(torch|torchvision|torchaudio|triton|numpy|nvidia-|cuda-|megatron-biomed)' > "$CONSTRAINTS" || true

TARGET_FLAGS=(--only-binary=:all: --implementation cp --python-version "$PYVER" --abi "cp${PYVER/./}" --abi abi3 --abi none)
for p in "${PLATFORMS[@]}"; do TARGET_FLAGS+=(--platform "$p"); done
PIP=("$PY" -m pip download --disable-pip-version-check -d "$DEST" -c "$CONSTRAINTS" "${TARGET_FLAGS[@]}")

echo "[collect_wheels] megatron-core (no dependencies: torch and numpy come with the machine)"
"${PIP[@]}" --no-deps "${CORE[@]}"
echo "[collect_wheels] run-time packages and their dependencies"
"${PIP[@]}" "${RUNTIME[@]}"
if [ "$ALL" = 1 ]; then
  echo "[collect_wheels] tools' packages"
  for pkg in "${TOOLS[@]}"; do
    if ! "${PIP[@]}" "$pkg"; then  # published as a source archive only (e.g. seqeval): build a wheel here
      echo "[collect_wheels] $pkg has no wheel for the target: building one (pure Python) with its dependencies"
      "$PY" -m pip wheel --disable-pip-version-check --no-deps -c "$CONSTRAINTS" -w "$DEST" "$pkg"
    fi
  done
fi
# Dependencies pulled in that the machine provides itself are dropped (install_offline.sh skips them anyway).
rm -f "$DEST"/torch-*.whl "$DEST"/triton-*.whl "$DEST"/numpy-*.whl "$DEST"/nvidia_*.whl "$DEST"/cuda_*.whl
echo "[collect_wheels] $(ls "$DEST"/*.whl | wc -l) wheels in $DEST ($(du -sh "$DEST" | cut -f1)); install with:"
echo "  MEGATRON_BIOMED_WHEELS=$DEST source tools/setup_env.sh     (or tools/install_offline.sh --wheels $DEST)"
