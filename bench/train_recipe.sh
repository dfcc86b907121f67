#!/usr/bin/env bash
# A recipe end to end, timed: one fit of $CONFIG (default configs/default.yaml: one MobileNetV2, images
# alone, ~64k faces) → ONNX + INT8 export (calibrated on training faces only) → each held-out part
# evaluated on its own, for the checkpoint, the ONNX file and the INT8 file:
#   affectnet     the seeded 20 % of ../shared/data/affectnet (human labels: accuracy, valence, arousal)
#   rafdb         the seeded 20 % of ../shared/data/rafdb/train (7 classes)
#   ferplus_test  FER2013 PublicTest by FER+ majority vote (8 classes)
#   fer2013_test  FER2013 PublicTest, the old folder labels (7 classes, for continuity)
# → one compare table per part, and a summary line per file.
# Usage: bash bench/train_recipe.sh [RUN_DIR] [extra `train fit` args…]
#   SKIP_FIT=1 bash bench/train_recipe.sh RUN_DIR   re-runs only the steps after fitting
#   INSTALL=1  copy model.onnx / model.int8.onnx into realtime/models/ (the packaged default)
#   e.g. bash bench/train_recipe.sh runs/lite0 --set model.backbone=efficientnet_lite0
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/default}; shift || true
PY=${PYTHON:-.venv/bin/python}
CONFIG=${CONFIG:-configs/default.yaml}   # the 65k-face recipe (its data entries name the held-out parts)
PARTS=${PARTS:-"affectnet rafdb ferplus_test fer2013_test"}
FILES=${FILES:-"checkpoint.pt model.onnx model.int8.onnx"}   # which files of the run to evaluate
start=$(date +%s)
if [ "${SKIP_FIT:-0}" != 1 ]; then
  if [ -f "$RUN/last.pt" ]; then  # a killed fit continues where it stopped
    $PY -m train fit --run-dir "$RUN" --resume
  else
    $PY -m train fit --config "$CONFIG" --run-dir "$RUN" "$@"
  fi
fi
fit_s=$(( $(date +%s) - start ))
# Calibration faces: every AffectNet training face of the run and a spread of the others (never a
# held-out face).
$PY - "$RUN/splits.json" > "$RUN/calibration.txt" <<'PY'
import json, sys
train = json.load(open(sys.argv[1]))["train"]
affectnet = [p for p in train if "/affectnet/" in p]
others = [p for p in train if "/affectnet/" not in p]
print("\n".join(affectnet[::4] + others[:: max(1, len(others) // 600)]))
PY
$PY -m export onnx "$RUN/checkpoint.pt" -o "$RUN/model.onnx" --data "$RUN/calibration.txt"
$PY -m export int8 "$RUN/model.onnx" --data "$RUN/calibration.txt" --calibrate percentile -o "$RUN/model.int8.onnx"
for part in $PARTS; do
  evals=()
  for m in $FILES; do
    $PY -m train eval "$RUN/$m" --run-dir "$RUN" --split test --source "$part" -o "$RUN/eval_${part}_${m%.*}" --overwrite
    evals+=("$RUN/eval_${part}_${m%.*}")
  done
  $PY -m train compare "${evals[@]}" -o "$RUN/compare_$part"
done
$PY - "$RUN" $PARTS <<'PY'
import json, sys
run, parts = sys.argv[1], sys.argv[2:]
print("| file | " + " | ".join(f"{p} accuracy" for p in parts) + " | valence CCC | arousal CCC |")
print("| --- | " + " | ".join("---" for _ in parts) + " | --- | --- |")
import os
for m in ("checkpoint", "model", "model.int8"):
    if not os.path.isdir(f"{run}/eval_{parts[0]}_{m}"):
        continue
    ms = {p: json.load(open(f"{run}/eval_{p}_{m}/metrics.json")) for p in parts}
    accs = " | ".join(f"{ms[p]['expression']['accuracy']:.3f}" for p in parts)
    a = ms[parts[0]]
    print(f"| {m} | {accs} | {a['valence']['ccc']:.3f} | {a['arousal']['ccc']:.3f} |")
PY
if [ "${INSTALL:-0}" = 1 ]; then
  cp "$RUN/model.onnx" realtime/models/affectcam_default.onnx
  cp "$RUN/model.int8.onnx" realtime/models/affectcam_default.int8.onnx
fi
echo "fit took ${fit_s}s on $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p'))"
