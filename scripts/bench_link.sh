#!/usr/bin/env bash
# Two hosts on a real link, one CPU rank each: the data-parallel step time for every
# gradient compression mode of segzoo (dist.compression) beside PyTorch DDP under torchrun
# with its matching communication hook, at a given link rate (docs/distributed.md, "Slow
# links"). Root: it makes two network namespaces joined by a veth pair (addresses
# 10.232.0.1 and .2, which exist only inside them), shapes both directions with tc tbf,
# and deletes them at the end.
#   scripts/bench_link.sh RATE_MBIT [--steps N] [--torch-venv DIR] [--modes "none bf16 …"]
#   RATE_MBIT 0: the link unshaped. BENCH_LINK_KEEP=1 keeps the logs.
# Same model, batch, threads and buckets on both sides: HRNetV2-W18-Small-v2, batch 2 of
# 128×256, SGD, one thread per rank, 25 MiB buckets. The PyTorch side is
# scripts/torch_peer.py (its own HRNetV2) in a venv with the full torch 2.11.0 wheel
# (default .segzoo/cuda-venv, which scripts/gpu_bundle.sh makes; its torch runs on CPU).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RATE="${1:?usage: scripts/bench_link.sh RATE_MBIT [--steps N] [--torch-venv DIR] [--modes LIST]}"
shift
STEPS=10 VENV="$ROOT/.segzoo/cuda-venv" MODES="none fp16 bf16 powersgd"
while (($#)); do
  case "$1" in
    --steps) STEPS="$2"; shift 2 ;;
    --torch-venv) VENV="$2"; shift 2 ;;
    --modes) MODES="$2"; shift 2 ;;
    *) echo "bench_link: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "bench_link: needs root (network namespaces)" >&2; exit 2; }
SEGZOO="${SEGZOO_BIN:-$ROOT/target/release}/segzoo"
LAUNCH="${SEGZOO_BIN:-$ROOT/target/release}/segzoo-launch"
[[ -x "$SEGZOO" ]] || { echo "bench_link: no $SEGZOO: cargo build --release (or SEGZOO_BIN=DIR)" >&2; exit 2; }

# PyTorch's PowerSGD hook imports numpy, which the torch wheel does not pull in.
if [[ -x "$VENV/bin/python3" ]] && ! "$VENV/bin/python3" -c "import numpy" 2>/dev/null; then
  "$VENV/bin/pip" install -q numpy
fi

WORK="$(mktemp -d)"
TAG="$$"
NS=("szla$TAG" "szlb$TAG")
ADDR=(10.232.0.1 10.232.0.2)
cleanup() {
  for ns in "${NS[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  if [[ -n "${BENCH_LINK_KEEP:-}" ]]; then echo "bench_link: logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
for i in 0 1; do ip netns add "${NS[$i]}"; ip -n "${NS[$i]}" link set lo up; done
ip link add "szva$TAG" netns "${NS[0]}" type veth peer name "szvb$TAG" netns "${NS[1]}"
for i in 0 1; do
  dev=$([[ $i == 0 ]] && echo "szva$TAG" || echo "szvb$TAG")
  ip -n "${NS[$i]}" link set "$dev" name eth0
  ip -n "${NS[$i]}" addr add "${ADDR[$i]}/24" dev eth0
  ip -n "${NS[$i]}" link set eth0 up
  if [[ "$RATE" != 0 ]]; then
    ip netns exec "${NS[$i]}" tc qdisc replace dev eth0 root tbf rate "${RATE}mbit" burst 64kb latency 400ms
  fi
done

cd "$WORK"
cat > c.toml <<'EOF'
[model]
name = "hrnetv2_w18_small_v2"
[data]
crop_size = [128, 256]
[train]
batch_size = 2
optimizer = "sgd"
lr = 0.01
[dist]
backend = "gloo"
bucket_mb = 25.0
EOF
"$LAUNCH" gen-table --server-id "${ADDR[0]}" --devices 0 -o one.json >/dev/null
python3 - "${ADDR[@]}" > t.json <<'EOF'
import json, sys
servers = [{"server_id": a, "device": [{"device_id": "0", "rank_id": str(i)}]} for i, a in enumerate(sys.argv[1:])]
print(json.dumps({"version": "1.0", "server_count": "2", "status": "completed", "server_list": servers}))
EOF

# segzoo: `bench train` on both hosts, rank 0's figure.
segzoo_ms() {
  local mode="$1" port=$((29600 + RANDOM % 200))
  for i in 1 0; do
    ip netns exec "${NS[$i]}" env GLOO_SOCKET_IFNAME=eth0 OMP_NUM_THREADS=1 "$LAUNCH" --rank-table t.json --server-id "${ADDR[$i]}" \
      --log-dir "lg_${mode}_$i" --master-port "$port" --group-port $((port + 1)) --console rank0 -- \
      "$SEGZOO" bench train --config c.toml --steps "$STEPS" --device cpu \
      --set "dist.compression=\"$mode\"" --set "dist.powersgd_rank=2" > "seg_${mode}_$i.log" 2>&1 &
  done
  wait
  grep -oE "[0-9.]+ ms/step" "seg_${mode}_0.log" | head -n1 | cut -d' ' -f1
}

# PyTorch DDP under torchrun with the matching hook, rank 0's figure.
torch_ms() {
  local hook="$1" port=$((29800 + RANDOM % 200))
  [[ -x "$VENV/bin/torchrun" ]] || { echo "-"; return; }
  for i in 1 0; do
    ip netns exec "${NS[$i]}" env GLOO_SOCKET_IFNAME=eth0 OMP_NUM_THREADS=1 "$VENV/bin/torchrun" --nnodes 2 \
      --node-rank "$i" --nproc-per-node 1 --master-addr "${ADDR[0]}" --master-port "$port" \
      "$ROOT/scripts/torch_peer.py" train --ddp --hook "$hook" --model hrnetv2_w18_small_v2 --classes 19 \
      --batch 2 --size 128x256 --optimizer sgd --lr 0.01 --steps "$STEPS" --warmup 3 --threads 1 \
      --memory-format contiguous --device cpu > "torch_${hook}_$i.log" 2>&1 &
  done
  wait
  python3 -c "import json,sys; print(round(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])['ms_per_step'], 1))" \
    "torch_${hook}_0.log" 2>/dev/null || echo "-"
}

declare -A SEG TORCH
for mode in $MODES; do
  SEG[$mode]="$(segzoo_ms "$mode")"
  TORCH[$mode]="$(torch_ms "$mode")"
  echo "bench_link: $mode: segzoo ${SEG[$mode]:-?} ms/step, PyTorch DDP ${TORCH[$mode]} ms/step" >&2
done
base="${SEG[none]:-}"
printf '\n| link %s | segzoo ms/step | vs none | PyTorch DDP (hook) ms/step | segzoo / DDP |\n' \
  "$([[ $RATE == 0 ]] && echo unshaped || echo "${RATE} Mbit/s")"
printf '|---|---|---|---|---|\n'
for mode in $MODES; do
  python3 - "$mode" "${SEG[$mode]:-}" "${TORCH[$mode]}" "$base" <<'EOF'
import sys
mode, seg, torch, base = sys.argv[1:]
f = lambda v: float(v) if v not in ("", "-") else None
s, t, b = f(seg), f(torch), f(base)
speed = f"{b / s:.2f}×" if s and b else "-"
ratio = f"{s / t:.2f}" if s and t else "-"
print(f"| {mode} | {seg or '-'} | {speed} | {torch} | {ratio} |")
EOF
done
