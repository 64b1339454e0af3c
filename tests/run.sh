#!/usr/bin/env bash
# Set up (as examples/quickstart.sh does) and run the whole test suite on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup_env.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$PYTHON" -m pytest tests -q -ra --timeout=900 "$@"
