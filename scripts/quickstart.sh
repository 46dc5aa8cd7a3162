#!/usr/bin/env bash
# The main job: set up, build release, generate a synthetic Cityscapes-format dataset,
# train the quickstart model on it, and evaluate the best checkpoint.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
cargo build --release --workspace
SEGZOO=target/release/segzoo
DATA=data/synth_cityscapes
"$SEGZOO" env
if [[ ! -f "$DATA/train.lst" ]]; then
  "$SEGZOO" synth cityscapes --out "$DATA" --train 40 --val 10 --size 512x256 --seed 0
fi
"$SEGZOO" make-lists cityscapes --root "$DATA" --check
# --resume auto continues an interrupted run; a finished one ends at once.
"$SEGZOO" train --config configs/quickstart.toml --resume auto
"$SEGZOO" eval --config configs/quickstart.toml --checkpoint runs/quickstart/checkpoints/best.safetensors \
  --json runs/quickstart/eval.json
# One PNG per val image: image | ground truth | prediction, with a legend.
"$SEGZOO" infer --config configs/quickstart.toml --checkpoint runs/quickstart/checkpoints/best.safetensors \
  --input "$DATA/val.lst" --output runs/quickstart/predictions --format compare --force
"$SEGZOO" runs summary runs/quickstart
echo "quickstart done: runs/quickstart/{curves.png,metrics.jsonl,eval.json,predictions/,tb/}"
echo "TensorBoard: .venv/bin/tensorboard --logdir runs/quickstart/tb"
