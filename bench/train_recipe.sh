#!/usr/bin/env bash
# The default recipe end to end, timed: fit (AffectNet with 20 % held out by
# the seeded split, + FER2013 Training) → eval on the held-out AffectNet part
# and on FER2013 PublicTest → ONNX + INT8 export (calibrated on AffectNet
# training faces only) → eval of both files → compare table.
# Usage: bash bench/train_recipe.sh [RUN_DIR] [extra `train fit` args…]
#   SKIP_FIT=1 bash bench/train_recipe.sh RUN_DIR   re-runs only the steps after fitting
#   e.g. bash bench/train_recipe.sh runs/lite0 --set model.backbone=efficientnet_lite0
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/default}; shift || true
PY=${PYTHON:-.venv/bin/python}
FER_TEST=${FER_TEST:-../shared/data/fer2013/PublicTest}
start=$(date +%s)
[ "${SKIP_FIT:-0}" = 1 ] || $PY -m train fit --config configs/default.yaml --run-dir "$RUN" "$@"
fit_s=$(( $(date +%s) - start ))
$PY -m train eval "$RUN/checkpoint.pt" --split test -o "$RUN/eval_test"
# Calibration faces: the run's own AffectNet training images (never the held-out part).
$PY -c "import json,sys; print('\n'.join(p for p in json.load(open(sys.argv[1]))['train'] if '/affectnet/' in p))" \
    "$RUN/splits.json" > "$RUN/calibration.txt"
$PY -m export onnx "$RUN/checkpoint.pt" -o "$RUN/model.onnx" --data "$RUN/calibration.txt"
$PY -m export int8 "$RUN/model.onnx" --data "$RUN/calibration.txt" -o "$RUN/model.int8.onnx"
for m in model model.int8; do
  $PY -m train eval "$RUN/$m.onnx" --run-dir "$RUN" --split test -o "$RUN/eval_test_${m/./_}"
  $PY -m train eval "$RUN/$m.onnx" --data "fer2013:$FER_TEST" -o "$RUN/eval_fer_${m/./_}"
done
$PY -m train compare "$RUN/eval_test" "$RUN/eval_test_model" "$RUN/eval_test_model_int8" -o "$RUN/compare"
echo "fit took ${fit_s}s on $(nproc) cores"
