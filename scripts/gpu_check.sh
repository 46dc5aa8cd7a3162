#!/usr/bin/env bash
# The one check to run on a GPU machine with the CUDA build of segzoo:
#   SEGZOO_TORCH=cuda scripts/setup.sh && cargo build --release && scripts/gpu_check.sh
# (or binaries built elsewhere: SEGZOO_BIN=DIR, with torch's lib/ and the nvidia/*/lib
# folders on LD_LIBRARY_PATH). Uses every visible GPU, finishes in under 10 minutes, prints
# a table, and exits non-zero at the first wrong result:
#   1. dist-check over NCCL through segzoo-launch and through mpirun: every collective on
#      every kind with known values on every rank, then the all-reduce bus bandwidth;
#   2. a short `train` of HRNetV2-W48 in bf16 on synthetic Cityscapes: ms/step, peak memory;
#   3. `bench train` of the same with dist.overlap on and off: gradient communication left
#      exposed after backward (needs 2 GPUs or more: NCCL takes one rank per GPU);
#   4. `eval` of the deploy form in bf16 against fp32: mIoU and time.
# GPU_CHECK_OUT=DIR keeps the work files (default: a temporary directory).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${SEGZOO_BIN:-$ROOT/target/release}"
SEGZOO="$BIN/segzoo"
LAUNCH="$BIN/segzoo-launch"
OUT="${GPU_CHECK_OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
W48="$ROOT/configs/hrnetv2_w48_cityscapes.toml"
ROWS=()

fail() { echo "gpu_check: FAILED: $*" >&2; echo "gpu_check: work files in $OUT" >&2; exit 1; }
row() { ROWS+=("$(printf '| %-44s | %-58s |' "$1" "$2")"); echo "gpu_check: $1: $2"; }
# run LOG CMD…: the command's output into LOG; a failure ends the check, naming the log.
run() { local log="$1"; shift; "$@" >"$log" 2>&1 || { tail -n 30 "$log" >&2; fail "$* (log: $log)"; }; }
json_field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }

[[ -x "$SEGZOO" && -x "$LAUNCH" ]] || fail "no binaries in $BIN: cargo build --release (or SEGZOO_BIN=DIR)"
run "$OUT/env.json" "$SEGZOO" env --json
[[ "$(json_field "$OUT/env.json" "['torch_flavour']")" == cuda ]] || fail "not the CUDA build (SEGZOO_TORCH=cuda scripts/setup.sh)"
[[ "$(json_field "$OUT/env.json" "['cuda_available']")" == True ]] || fail "CUDA is not available to segzoo"
N="$(json_field "$OUT/env.json" "['cuda_device_count']")"
NCCL="$(json_field "$OUT/env.json" "['nccl']['version']")"
[[ "$NCCL" != None ]] || fail "NCCL not found: $(json_field "$OUT/env.json" "['nccl']['detail']")"
row "GPUs" "$N × $(json_field "$OUT/env.json" "['cuda_devices'][0]"), NCCL $NCCL"

# 1. dist-check over NCCL, both launchers.
run "$OUT/table.log" "$LAUNCH" gen-table --server-id 127.0.0.1 --devices "0-$((N - 1))" -o "$OUT/table.json"
check_collectives() {
  local how="$1" log="$2"
  local ok_ranks; ok_ranks="$(grep -c "nccl collectives ok for Float, Double, BFloat16, Half, Int64, Int, Uint8" "$log" || true)"
  [[ "$ok_ranks" == "$N" ]] || fail "dist-check through $how: $ok_ranks of $N ranks ok (log: $log)"
  local bw; bw="$(grep -oE "bus bandwidth [0-9.]+ GB/s" "$log" | head -n1)"
  [[ -n "$bw" ]] || fail "dist-check through $how printed no bandwidth (log: $log)"
  row "dist-check, NCCL, $how, 256 MiB" "$N rank(s) ok; $bw"
}
run "$OUT/dist_check_launch.log" "$LAUNCH" --rank-table "$OUT/table.json" --server-id 127.0.0.1 \
  --log-dir "$OUT/launch_logs" -- "$SEGZOO" dist-check --backend nccl --mib 256 --iters 20
check_collectives segzoo-launch "$OUT/dist_check_launch.log"
run "$OUT/dist_check_mpirun.log" mpirun --allow-run-as-root --oversubscribe -n "$N" \
  "$SEGZOO" dist-check --backend nccl --mib 256 --iters 20
check_collectives mpirun "$OUT/dist_check_mpirun.log"

# 2. A short bf16 training run of HRNetV2-W48 (batch 2 per GPU of 512×1024).
run "$OUT/synth.log" "$SEGZOO" synth cityscapes --out "$OUT/data" --train 16 --val 4 --size 1024x512
W48_SET=(--set "data.root=$OUT/data" --set train.precision=bf16 --set train.batch_size=2 --set data.num_workers=2)
run "$OUT/train.log" "$LAUNCH" --rank-table "$OUT/table.json" --server-id 127.0.0.1 --log-dir "$OUT/train_logs" -- \
  "$SEGZOO" train --config "$W48" --max-steps 30 "${W48_SET[@]}" --set "train.output_dir=$OUT/w48" \
  --set log.interval=10 --set eval.start=999 --set train.checkpoint_steps=30
python3 - "$OUT/w48/metrics.jsonl" >"$OUT/train_row.txt" <<'EOF' || fail "training: $(cat "$OUT/train_row.txt")"
import json, math, sys
steps = [r for r in map(json.loads, open(sys.argv[1])) if r["kind"] == "train"]
if not steps or not all(math.isfinite(r["loss"]) for r in steps):
    sys.exit(f"no finite losses in {sys.argv[1]}")
last = steps[-1]
mem = last.get("cuda_max_allocated_mb") or last["peak_mem_mb"]
print(f"step {last['step']}: loss {last['loss']:.3f}, {last['ms_per_step']:.0f} ms/step, "
      f"{last['img_per_s']:.1f} img/s, peak {mem:.0f} MB")
EOF
row "train HRNetV2-W48 bf16, batch 2×$N, 512×1024" "$(cat "$OUT/train_row.txt")"

# 3. Gradient communication left exposed after backward, overlap on and off.
if (( N > 1 )); then
  for overlap in true false; do
    run "$OUT/bench_$overlap.log" "$LAUNCH" --rank-table "$OUT/table.json" --server-id 127.0.0.1 \
      --log-dir "$OUT/bench_logs" --console rank0 -- "$SEGZOO" bench train --config "$W48" --steps 10 \
      "${W48_SET[@]}" --set "dist.overlap=$overlap"
    exposed="$(grep -oE "[0-9.]+ ms/step exposed" "$OUT/bench_$overlap.log" || true)"
    step="$(grep -oE "[0-9.]+ ms/step, [0-9.]+ img/s" "$OUT/bench_$overlap.log" || true)"
    [[ -n "$exposed" && -n "$step" ]] || fail "bench train (overlap $overlap) printed no figures"
    row "bench train W48 bf16, overlap $overlap" "$step; $exposed"
  done
else
  row "bench train W48 bf16, overlap on/off" "n/a: one GPU (NCCL needs one GPU per rank)"
fi

# 4. The deploy form (BatchNorm folded) evaluated in bf16 against fp32.
CKPT="$OUT/w48/checkpoints/ckpt_step_00000030.safetensors"
[[ -f "$CKPT" ]] || fail "no checkpoint at step 30 ($CKPT)"
for p in fp32 bf16; do
  start=$(date +%s.%N)
  run "$OUT/eval_$p.log" "$SEGZOO" eval --config "$W48" --checkpoint "$CKPT" --precision "$p" \
    --set "data.root=$OUT/data" --json "$OUT/eval_$p.json"
  secs=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)")
  miou="$(json_field "$OUT/eval_$p.json" "['miou']")"
  row "eval deploy form, $p, 4 val images" "mIoU $miou in $secs s (process included)"
done
python3 - "$OUT/eval_fp32.json" "$OUT/eval_bf16.json" <<'EOF' || fail "bf16 eval disagrees with fp32"
import json, math, sys
a, b = (json.load(open(p))["miou"] for p in sys.argv[1:])
if not (math.isfinite(a) and math.isfinite(b) and abs(a - b) <= 0.02):
    sys.exit(f"mIoU fp32 {a} vs bf16 {b}")
EOF

echo
printf '| %-44s | %-58s |\n' "check" "result"
printf '|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..60})"
printf '%s\n' "${ROWS[@]}"
echo "gpu_check: all passed (work files in $OUT)"
