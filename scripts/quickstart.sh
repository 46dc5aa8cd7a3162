#!/usr/bin/env bash
# The main job: set up, build release, and run segzoo on this machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
cargo build --release --workspace
SEGZOO=target/release/segzoo
DATA=data/synth_cityscapes
"$SEGZOO" env
# A synthetic Cityscapes-format dataset, generated once.
if [[ ! -f "$DATA/train.lst" ]]; then
  "$SEGZOO" synth cityscapes --out "$DATA" --train 40 --val 10 --size 512x256 --seed 0
fi
"$SEGZOO" make-lists cityscapes --root "$DATA" --check
"$SEGZOO" bench data --config configs/quickstart.toml --threads 2 --batches 10
"$SEGZOO" model-info configs/quickstart.toml
