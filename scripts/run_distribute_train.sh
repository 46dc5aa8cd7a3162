#!/usr/bin/env bash
# Rank table (one worker per device, NCCL): bash scripts/run_distribute_train.sh RANK_TABLE_FILE
#   CONFIG [DATASET_PATH] [TRAIN_OUTPUT_PATH] [CHECKPOINT_PATH] [BEGIN_EPOCH] [more segzoo train flags…]
# Run it on every server of the table. Worker logs: <output dir>/logs/rank_<k>.log.
# MAX_RESTARTS=N restarts the local group after a failure (workers resume from the newest
# checkpoint); MASTER_PORT sets the port rank 0 hosts the rendezvous on (default 29500).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[[ $# -ge 2 ]] || { sed -n 2,6p "${BASH_SOURCE[0]}" >&2; exit 2; }
TABLE="$1"; CONFIG="$2"
train_flags "${3:-}" "${4:-}" "${5:-}" "${6:-}"
OUT="${4:--}"
[[ "$OUT" == "-" ]] && OUT="$(output_dir "$CONFIG")"
exec "$LAUNCH" --rank-table "$TABLE" --log-dir "$OUT/logs" --master-port "${MASTER_PORT:-29500}" \
  --max-restarts "${MAX_RESTARTS:-0}" -- "$SEGZOO" train --config "$CONFIG" "${TRAIN_FLAGS[@]}" "${@:7}"
