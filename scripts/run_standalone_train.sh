#!/usr/bin/env bash
# One device: bash scripts/run_standalone_train.sh CONFIG [DEVICE_ID] [DATASET_PATH]
#   [TRAIN_OUTPUT_PATH] [CHECKPOINT_PATH] [BEGIN_EPOCH] [more segzoo train flags…]
# DEVICE_ID picks cuda:DEVICE_ID where there is CUDA (the CPU otherwise); "-" skips a position.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[[ $# -ge 1 ]] || { sed -n 2,4p "${BASH_SOURCE[0]}" >&2; exit 2; }
CONFIG="$1"; DEVICE="${2:--}"
train_flags "${3:-}" "${4:-}" "${5:-}" "${6:-}"
[[ "$DEVICE" != "-" ]] && export DEVICE_ID="$DEVICE"
exec "$SEGZOO" train --config "$CONFIG" "${TRAIN_FLAGS[@]}" "${@:7}"
