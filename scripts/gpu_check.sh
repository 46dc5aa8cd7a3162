#!/usr/bin/env bash
# The one check of segzoo's GPU path, in one command (scripts/gpu_check.py says what it runs):
#   scripts/gpu_check.sh [--out DIR] [--bin DIR] [--peer-python PY]   # on a GPU machine
#   scripts/gpu_check.sh --cpu --bin target/debug                      # every step on the CPU
# It prints a table, writes it as JSON to DIR, and exits 1 at the first wrong result.
# In a bundle of scripts/gpu_bundle.sh, env.sh beside it puts PyTorch's libraries on the
# library path first (the bundle carries only what PyTorch does not ship).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -f "$ROOT/env.sh" ]]; then
  # shellcheck source=/dev/null
  source "$ROOT/env.sh"
fi
exec python3 "$ROOT/scripts/gpu_check.py" "$@"
