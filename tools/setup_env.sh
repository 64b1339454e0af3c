#!/usr/bin/env bash
# Shared set-up for examples/quickstart.sh and tests/run.sh: find Python 3.12, use the active
# virtual environment or create .venv, and (re)install the project when its build inputs changed.
# Source it: afterwards $PYTHON is the interpreter to use.
set -euo pipefail

MB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

_die() { echo "error: $*" >&2; exit 1; }

# Offline mode, for a GPU machine with its own PyTorch and no package registry: MEGATRON_BIOMED_WHEELS=DIR (a
# folder filled by tools/collect_wheels.sh). No virtual environment and no torch install: the machine's python
# ($PYTHON or python3) and torch are used as they are, the wheels go to $MEGATRON_BIOMED_SITE (default
# .offline-site) and the checkout is built in place (tools/install_offline.sh); both are put on PYTHONPATH.
if [ -n "${MEGATRON_BIOMED_WHEELS:-}" ]; then
  PYTHON="${PYTHON:-$(command -v python3 || true)}"
  [ -n "$PYTHON" ] || _die "offline mode (MEGATRON_BIOMED_WHEELS is set): no python3 on PATH; set PYTHON to the machine's python"
  export PYTHON
  export MEGATRON_BIOMED_SITE="${MEGATRON_BIOMED_SITE:-$MB_ROOT/.offline-site}"
  _stamp_file="$MB_ROOT/.install-stamp-offline"
  _stamp="$(cd "$MB_ROOT" && { ls "$MEGATRON_BIOMED_WHEELS"; cat setup.py requirements.txt; find csrc -type f -print0 | sort -z | xargs -0 cat; } 2>/dev/null | sha1sum | cut -d' ' -f1)"
  if [ "$(cat "$_stamp_file" 2>/dev/null)" != "$_stamp" ]; then
    bash "$MB_ROOT/tools/install_offline.sh" --wheels "$MEGATRON_BIOMED_WHEELS" --target "$MEGATRON_BIOMED_SITE"
    echo "$_stamp" > "$_stamp_file"
  fi
  export PYTHONPATH="$MB_ROOT:$MEGATRON_BIOMED_SITE${PYTHONPATH:+:$PYTHONPATH}"
  return 0 2>/dev/null || exit 0
fi

if [ -n "${VIRTUAL_ENV:-}" ]; then
  PYTHON="$VIRTUAL_ENV/bin/python"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' \
    || _die "the active virtual environment ($VIRTUAL_ENV) is not Python 3.12; megatron-core 0.19 needs 3.12. Deactivate it or create one with python3.12 -m venv."
else
  if [ ! -x "$MB_ROOT/.venv/bin/python" ]; then
    command -v python3.12 >/dev/null 2>&1 && python3.12 -c 'pass' 2>/dev/null \
      || _die "Python 3.12 not found (megatron-core >= 0.17 requires it). Install it (e.g. 'pyenv install 3.12' or your distribution's python3.12) so that 'python3.12' is on PATH, then rerun."
    echo "[setup] creating virtual environment $MB_ROOT/.venv (python3.12)"
    python3.12 -m venv "$MB_ROOT/.venv"
  fi
  PYTHON="$MB_ROOT/.venv/bin/python"
fi
export PYTHON

# Reinstall only when something that affects the install changed. Both README commands build the same way
# (the CUDA kernels when torch is a CUDA build and nvcc is found, see csrc/build_cuda.py), so one install
# serves both; MEGATRON_BIOMED_BUILD_CUDA=0/1 enters the stamp only when the user sets it.
_stamp_file="$MB_ROOT/.install-stamp"
_stamp="cuda=${MEGATRON_BIOMED_BUILD_CUDA:-auto}-$(cd "$MB_ROOT" && cat setup.py requirements.txt requirements-test.txt 2>/dev/null | sha1sum | cut -d' ' -f1)-$(cd "$MB_ROOT" && find csrc -type f \( -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' -o -name '*.h' -o -name '*.py' \) -print0 2>/dev/null | sort -z | xargs -0 cat 2>/dev/null | sha1sum | cut -d' ' -f1)"
if [ "$(cat "$_stamp_file" 2>/dev/null)" != "$_stamp" ] || ! "$PYTHON" -c 'import megatron_biomed' 2>/dev/null; then
  echo "[setup] installing requirements and megatron-biomed into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
  "$PYTHON" -m pip install -q --upgrade pip
  "$PYTHON" -m pip install -q -r "$MB_ROOT/requirements.txt" -r "$MB_ROOT/requirements-test.txt"
  (cd "$MB_ROOT" && "$PYTHON" -m pip install -q --no-build-isolation -e .)
  echo "$_stamp" > "$_stamp_file"
fi
