#!/usr/bin/env bash
# mpirun, one process per device (GPUs: NCCL; CPU: MPI): bash scripts/run_distribute_train_gpu.sh
#   DEVICE_NUM CONFIG [DATASET_PATH] [TRAIN_OUTPUT_PATH] [CHECKPOINT_PATH] [BEGIN_EPOCH] [more flags…]
# MPIRUN_ARGS adds mpirun options (e.g. a hostfile for several servers).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[[ $# -ge 2 ]] || { sed -n 2,4p "${BASH_SOURCE[0]}" >&2; exit 2; }
N="$1"; CONFIG="$2"
train_flags "${3:-}" "${4:-}" "${5:-}" "${6:-}"
ROOT_ARGS=()
[[ $(id -u) -eq 0 ]] && ROOT_ARGS=(--allow-run-as-root)
# shellcheck disable=SC2086
exec mpirun "${ROOT_ARGS[@]}" --oversubscribe --bind-to none -n "$N" ${MPIRUN_ARGS:-} \
  "$SEGZOO" train --config "$CONFIG" "${TRAIN_FLAGS[@]}" "${@:7}"
