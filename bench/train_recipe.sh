#!/usr/bin/env bash
# The default recipe end to end on the shared AffectNet crops, timed:
# fit (20 % held out by the seeded split) → eval on the held-out part →
# ONNX + INT8 export → eval of both files on the same part → compare table.
# Usage: bash bench/train_recipe.sh [RUN_DIR] [extra `train fit` args…]
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/default}; shift || true
PY=${PYTHON:-.venv/bin/python}
start=$(date +%s)
$PY -m train fit --config configs/default.yaml --run-dir "$RUN" "$@"
fit_s=$(( $(date +%s) - start ))
$PY -m train eval "$RUN/checkpoint.pt" --split test --tta -o "$RUN/eval_test"
$PY -m export onnx "$RUN/checkpoint.pt" -o "$RUN/model.onnx" --data ../shared/data/affectnet
$PY -m export int8 "$RUN/model.onnx" --data ../shared/data/affectnet -o "$RUN/model.int8.onnx"
$PY -m train eval "$RUN/model.onnx" --run-dir "$RUN" --split test -o "$RUN/eval_test_onnx"
$PY -m train eval "$RUN/model.int8.onnx" --run-dir "$RUN" --split test -o "$RUN/eval_test_int8"
$PY -m train compare "$RUN/eval_test" "$RUN/eval_test_onnx" "$RUN/eval_test_int8" -o "$RUN/compare"
echo "fit took ${fit_s}s on $(nproc) cores"
