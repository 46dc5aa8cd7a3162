#!/usr/bin/env bash
# ONNX Runtime inference and scoring: bash scripts/run_infer_onnx.sh MODEL.onnx DATA_ROOT LIST [OUT_DIR]
#   [more onnx_infer.py flags, e.g. --batch-size 2 --provider cuda --threads 4]
# Predicts LIST (`image label` lines under DATA_ROOT; a relative LIST is looked up as given,
# then under DATA_ROOT) with an ONNX file from `segzoo export --format onnx` as `segzoo eval`
# does (single scale, no flip), writes OUT_DIR/<image stem>.png train ids (default:
# MODEL's path without .onnx, plus _preds), then scores them with `segzoo eval-preds`.
# DATASET=cityscapes|lip|voc names what to score against (default: the model's `dataset`
# metadata, else its class count: 19 cityscapes, 20 lip, 21 voc).
set -euo pipefail
usage() { sed -n 2,9p "${BASH_SOURCE[0]}" >&2; exit 2; }
[[ $# -ge 3 ]] || usage
MODEL="$1"; DATA="$2"; LIST="$3"; OUT="${4:-${1%.onnx}_preds}"
[[ -f "$MODEL" ]] || { echo "run_infer_onnx.sh: model $MODEL: no such file" >&2; exit 2; }
[[ -d "$DATA" ]] || { echo "run_infer_onnx.sh: data root $DATA: no such folder" >&2; exit 2; }
if [[ ! -f "$LIST" ]]; then
  [[ "$LIST" != /* && -f "$DATA/$LIST" ]] || { echo "run_infer_onnx.sh: list $LIST: no such file (nor $DATA/$LIST)" >&2; exit 2; }
  LIST="$DATA/$LIST"
fi
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PY="$ROOT/.venv/bin/python"

# The dataset eval-preds scores against, from the model's metadata unless DATASET says.
if [[ -z "${DATASET:-}" ]]; then
  DATASET="$("$PY" - "$MODEL" <<'PYEOF'
import sys, onnxruntime as ort
meta = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
by_classes = {"19": "cityscapes", "20": "lip", "21": "voc"}
print(meta.get("dataset") or by_classes.get(meta.get("num_classes", ""), ""))
PYEOF
)"
  [[ -n "$DATASET" ]] || { echo "run_infer_onnx.sh: cannot tell the dataset from $MODEL's metadata; set DATASET=cityscapes|lip|voc" >&2; exit 2; }
fi

"$PY" "$ROOT/scripts/onnx_infer.py" "$MODEL" "$DATA" "$LIST" "$OUT" "${@:5}"
"$SEGZOO" eval-preds --dataset "$DATASET" --root "$DATA" --list "$LIST" --pred-dir "$OUT" --json "$OUT/eval.json"
echo "scores: $OUT/eval.json"
