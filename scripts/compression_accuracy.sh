#!/usr/bin/env bash
# What gradient compression costs in accuracy (docs/distributed.md, "Slow links"): the
# quickstart (configs/quickstart.toml: 1500 steps of Adam, HRNetV2-W18-Small-v1 from
# scratch on the synthetic Cityscapes set) trained over 2 CPU ranks under segzoo-launch,
# batch 2 per rank (the single process's 4), once per dist.compression mode, then the best
# checkpoint of each evaluated as the quickstart's own (scales 1.0, 1.25, 1.5 + flip).
#   scripts/compression_accuracy.sh [--out DIR] [--modes "none bf16 powersgd"] [--steps N] [--seed N]
# About 8 minutes a mode on 2 cores. Prints a table and writes DIR/accuracy.json.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/runs/compression" MODES="none bf16 powersgd" STEPS="" SEED=""
while (($#)); do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --modes) MODES="$2"; shift 2 ;;
    --steps) STEPS="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    *) echo "compression_accuracy: unknown argument $1" >&2; exit 2 ;;
  esac
done
BIN="${SEGZOO_BIN:-$ROOT/target/release}"
[[ -x "$BIN/segzoo" && -x "$BIN/segzoo-launch" ]] ||
  { echo "compression_accuracy: no $BIN/segzoo(-launch): cargo build --release (or SEGZOO_BIN=DIR)" >&2; exit 2; }
cd "$ROOT"
DATA=data/synth_cityscapes
if [[ ! -f "$DATA/train.lst" ]]; then
  "$BIN/segzoo" synth cityscapes --out "$DATA" --train 40 --val 10 --size 512x256 --seed 0
fi
mkdir -p "$OUT"
for mode in $MODES; do
  run="$OUT/$mode"
  echo "[accuracy] $mode: training into $run"
  # --resume auto: an interrupted benchmark continues; a finished mode ends at once.
  "$BIN/segzoo-launch" --rank-table rank_tables/hccl_2p.json --server-id 127.0.0.1 \
    --log-dir "$OUT/logs_$mode" --console none -- \
    "$BIN/segzoo" train --config configs/quickstart.toml --resume auto ${STEPS:+--max-steps "$STEPS"} \
    --set train.batch_size=2 ${SEED:+--set "train.seed=$SEED"} --set "dist.compression=$mode" --set "train.output_dir=$run"
  "$BIN/segzoo" eval --config configs/quickstart.toml --checkpoint "$run/checkpoints/best.safetensors" \
    --json "$run/eval.json" >"$run/eval.log" 2>&1
done
python3 - "$OUT" $MODES <<'EOF'
import json, sys
out, modes = sys.argv[1], sys.argv[2:]
rows = []
for m in modes:
    e = json.load(open(f"{out}/{m}/eval.json"))
    evals = [r for r in map(json.loads, open(f"{out}/{m}/metrics.jsonl")) if r.get("kind") == "eval"]
    best = max(evals, key=lambda r: r.get("miou") or 0.0)
    rows.append({"mode": m, "miou": e["miou"], "pixel_acc": e.get("pixel_acc"),
                 "best_val_miou_in_training": best.get("miou"), "best_step": best.get("step")})
base = next((r["miou"] for r in rows if r["mode"] == "none"), None)
print("| dist.compression | val mIoU (scales 1.0/1.25/1.5 + flip) | vs none | best single-scale val mIoU in training (step) |")
print("|---|---|---|---|")
for r in rows:
    vs = "" if base is None or r["mode"] == "none" else f"{100 * (r['miou'] - base):+.2f} points"
    print(f"| {r['mode']} | {100 * r['miou']:.2f} | {vs} | {100 * r['best_val_miou_in_training']:.2f} ({r['best_step']}) |")
json.dump(rows, open(f"{out}/accuracy.json", "w"), indent=1)
EOF
