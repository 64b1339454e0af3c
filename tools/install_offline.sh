#!/usr/bin/env bash
# Install megatron-biomed on a GPU machine that has its own PyTorch and no package registry (README: "Installing
# on a GPU machine without a package registry"). Uses the machine's python and torch as they are (never installs,
# upgrades or replaces torch, triton, numpy or the nvidia-* CUDA wheels), takes megatron-core and the other
# pure-Python dependencies from a folder of wheels made elsewhere by tools/collect_wheels.sh, and builds the CUDA
# extension for the GPU that is present only.
#
#   tools/install_offline.sh --wheels DIR [--target DIR | --into-env] [--no-project] [--no-build] [--check]
#
#   --wheels DIR   the wheel folder (default $MEGATRON_BIOMED_WHEELS)
#   --target DIR   install the wheels into DIR (default .offline-site in the checkout) and build the project in
#                  place (setup.py build_ext --inplace): nothing in the machine's Python environment changes; use
#                  it with  export PYTHONPATH=<checkout>:DIR  (printed at the end)
#   --into-env     instead: pip install the wheels and the project (editable) into the interpreter's environment
#   --no-project   only the wheels (no project build)
#   --no-build     the project without the CUDA extension (MEGATRON_BIOMED_BUILD_CUDA=0)
#   --check        print what would run (every pip command, what is skipped and why) and change nothing
# Python: $PYTHON, else python3. Every pip call has --no-index (the folder is the only source) and --no-deps.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
WHEELS="${MEGATRON_BIOMED_WHEELS:-}"
TARGET=""
INTO_ENV=0
PROJECT=1
BUILD=1
CHECK=0

_die() { echo "install_offline: error: $*" >&2; exit 1; }
_say() { echo "[install_offline] $*"; }
_run() {  # print a command, and run it unless --check
  echo "[install_offline] $([ "$CHECK" = 1 ] && echo 'would run' || echo 'run'):$(printf ' %q' "$@")"
  if [ "$CHECK" = 0 ]; then "$@"; fi
}

while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) WHEELS="${2:?--wheels needs a folder}"; shift 2 ;;
    --target) TARGET="${2:?--target needs a folder}"; shift 2 ;;
    --into-env) INTO_ENV=1; shift ;;
    --no-project) PROJECT=0; shift ;;
    --no-build) BUILD=0; shift ;;
    --check) CHECK=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) _die "unknown argument '$1' (see --help)" ;;
  esac
done

[ -n "$WHEELS" ] || _die "no wheel folder: pass --wheels DIR or set MEGATRON_BIOMED_WHEELS (fill it elsewhere with tools/collect_wheels.sh)"
[ -d "$WHEELS" ] || _die "--wheels $WHEELS is not a folder"
[ "$INTO_ENV" = 1 ] && [ -n "$TARGET" ] && _die "--target and --into-env exclude each other"
[ "$INTO_ENV" = 1 ] || TARGET="${TARGET:-$ROOT/.offline-site}"
command -v "$PY" >/dev/null 2>&1 || _die "python '$PY' not found (set PYTHON to the machine's python that has torch)"

# The machine's python, torch and installed distributions, read in one go without importing torch (slow).
# What the machine has is not installed again (a newer filelock or typing_extensions in front of torch's own is a
# risk, not a gain); megatron-core always comes from the folder, at the version the project pins.
read -r PYOK PYVER TORCH_VERSION HAVE < <("$PY" - <<'EOF'
import importlib.metadata as md, re, sys
names = {re.sub(r"[-_.]+", "_", d.metadata["Name"] or "").lower(): d.version for d in md.distributions()}
print(int(sys.version_info >= (3, 12)), f"{sys.version_info[0]}.{sys.version_info[1]}", names.get("torch", "-"),
      ",".join(sorted(n for n in names if n)))
EOF
)
[ "$PYOK" = 1 ] || _die "$PY is Python $PYVER; megatron-core 0.19 needs Python >= 3.12"
[ "$TORCH_VERSION" != "-" ] || _die "$PY has no torch: this mode uses the machine's own PyTorch (install torch first, or use tools/setup_env.sh where a package registry is reachable)"
_say "python $PYVER ($PY), torch $TORCH_VERSION (the machine's own: not touched)"
HAVE=",$HAVE,"

# Wheels to install: everything in the folder except the machine's torch stack and what the machine already has.
INSTALL=()
for whl in "$WHEELS"/*.whl; do
  [ -e "$whl" ] || continue
  name="$(basename "$whl")"
  dist="$(echo "${name%%-*}" | tr '[:upper:]' '[:lower:]' | tr '.-' '__')"
  case "$dist" in
    torch|torchvision|torchaudio|triton|numpy|nvidia_*|cuda_*)
      _say "skip $name (the machine's PyTorch installation provides it)" ;;
    megatron_core) INSTALL+=("$whl") ;;
    *)
      if [[ "$HAVE" == *",$dist,"* ]]; then _say "skip $name (already installed on this machine)"
      else INSTALL+=("$whl"); fi ;;
  esac
done
[ "${#INSTALL[@]}" -gt 0 ] || _die "no wheels to install in $WHEELS (expected megatron_core-0.19.2-*.whl and others from tools/collect_wheels.sh)"
ls "$WHEELS"/megatron_core-*.whl >/dev/null 2>&1 || _say "note: no megatron_core wheel in $WHEELS (training needs megatron-core==0.19.2)"

PIP=("$PY" -m pip install --no-index --find-links "$WHEELS" --no-deps --disable-pip-version-check)
if [ "$INTO_ENV" = 1 ]; then
  _run "${PIP[@]}" "${INSTALL[@]}"
else
  [ "$CHECK" = 1 ] || mkdir -p "$TARGET"
  _run "${PIP[@]}" --upgrade --target "$TARGET" "${INSTALL[@]}"
fi

if [ "$PROJECT" = 1 ]; then
  # The CUDA extension for the present GPU only: its capability, unless TORCH_CUDA_ARCH_LIST is set.
  [ "$BUILD" = 1 ] || export MEGATRON_BIOMED_BUILD_CUDA=0
  if [ "$BUILD" = 1 ] && [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
    if [ "$CHECK" = 1 ]; then
      _say "TORCH_CUDA_ARCH_LIST: the present GPU's capability (read from torch at run time)"
    else
      cap="$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability(0) if torch.cuda.is_available() else "")')"
      if [ -n "$cap" ]; then export TORCH_CUDA_ARCH_LIST="$cap"; _say "building for the present GPU: TORCH_CUDA_ARCH_LIST=$cap"
      else _say "no GPU visible: building for the default archs (see csrc/build_cuda.py)"; fi
    fi
  fi
  export MAX_JOBS="${MAX_JOBS:-$(nproc 2>/dev/null || echo 4)}"
  if [ "$INTO_ENV" = 1 ]; then
    _run "$PY" -m pip install --no-index --find-links "$WHEELS" --no-deps --no-build-isolation -e "$ROOT"
  else
    # setup.py imports its build helpers (pybind11, the torch extension builder) from the target folder too.
    (cd "$ROOT" && PYTHONPATH="$TARGET${PYTHONPATH:+:$PYTHONPATH}" _run "$PY" setup.py build_ext --inplace)
  fi
fi

if [ "$INTO_ENV" = 0 ]; then
  _say "done. Use it with:  export PYTHONPATH=$ROOT:$TARGET\${PYTHONPATH:+:\$PYTHONPATH}"
fi
if [ "$CHECK" = 0 ] && [ "$INTO_ENV" = 0 ]; then  # what landed, from the metadata folders
  n="$(find "$TARGET" -maxdepth 1 -name '*.dist-info' | wc -l)"
  mc="$(find "$TARGET" -maxdepth 1 -name 'megatron_core-*.dist-info' -printf '%f\n' | sed 's/megatron_core-\(.*\)\.dist-info/\1/')"
  _say "$n distributions in $TARGET${mc:+; megatron-core $mc}"
fi
