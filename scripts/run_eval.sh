#!/usr/bin/env bash
# Evaluate a checkpoint: bash scripts/run_eval.sh CONFIG CHECKPOINT_PATH [DEVICE_ID] [DATASET_PATH]
#   [more segzoo eval flags, e.g. --scales 0.5,0.75,1.0,1.25,1.5,1.75 --flip --json eval.json]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[[ $# -ge 2 ]] || { sed -n 2,3p "${BASH_SOURCE[0]}" >&2; exit 2; }
CONFIG="$1"; CKPT="$2"; DEVICE="${3:--}"; DATA="${4:--}"
FLAGS=()
[[ "$DATA" != "-" ]] && FLAGS+=(--set "data.root=$DATA")
[[ "$DEVICE" != "-" ]] && export DEVICE_ID="$DEVICE"
exec "$SEGZOO" eval --config "$CONFIG" --checkpoint "$CKPT" "${FLAGS[@]}" "${@:5}"
