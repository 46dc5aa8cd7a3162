#!/usr/bin/env bash
# Export a checkpoint for deployment: bash scripts/run_export.sh CONFIG CHECKPOINT_PATH [FORMAT]
#   [more segzoo export flags, e.g. --input-size 1024x2048 --aux]
# FORMAT is onnx (default) or torchscript (.pt); the file goes to the config's output folder:
# <output_dir>/export/<checkpoint stem>.onnx (.pt for TorchScript).
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n 2,5p "${BASH_SOURCE[0]}" >&2; exit 2; }
CONFIG="$1"; CKPT="$2"; FORMAT="${3:-onnx}"
[[ -f "$CONFIG" ]] || { echo "run_export.sh: config $CONFIG: no such file" >&2; exit 2; }
[[ -f "$CKPT" ]] || { echo "run_export.sh: checkpoint $CKPT: no such file" >&2; exit 2; }
case "$FORMAT" in
  onnx) EXT=onnx ;;
  torchscript) EXT=pt ;;
  *) EXT="$FORMAT" ;;  # segzoo export checks the name
esac
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
DIR="$(output_dir "$CONFIG")"
[[ -n "$DIR" ]] || { echo "run_export.sh: cannot read output_dir from $CONFIG" >&2; exit 2; }
STEM="$(basename "$CKPT")"; STEM="${STEM%.*}"
OUT="$DIR/export/$STEM.$EXT"
mkdir -p "$DIR/export"
"$SEGZOO" export --config "$CONFIG" --checkpoint "$CKPT" --format "$FORMAT" --out "$OUT" "${@:4}"
echo "exported: $OUT"
