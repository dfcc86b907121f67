#!/usr/bin/env bash
# How held-out accuracy grows with the number of AffectNet training faces: the
# default recipe (train + val, as the shipped fits) refitted on a stratified
# fraction of the AffectNet training faces (data.datasets[0].train_fraction;
# drawn as often, FER2013 unchanged, the held-out 20 % the same file list),
# each evaluated on the held-out part. The 1.0 point is the recipe itself.
# Usage: bash bench/learning_curve.sh [OUT_DIR] [extra `train fit` args…]
#   FRACTIONS="0.25 0.5 1.0"   one fit per fraction, all at once, one thread each (PARALLEL=0: in turn)
#   SEED=0
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/learning_curve}; shift || true
PY=${PYTHON:-.venv/bin/python}
FRACTIONS=${FRACTIONS:-"0.25 0.5 1.0"}
SEED=${SEED:-0}
if [ -z "${AFFECTCAM_FACE_MODEL:-}" ] && [ -f ../shared/models/face_landmarker.task ]; then
  export AFFECTCAM_FACE_MODEL=../shared/models/face_landmarker.task
fi
mkdir -p "$OUT"
datasets() {  # configs/default.yaml's two datasets, AffectNet thinned to fraction $1
  echo "data.datasets=[{type: affectnet, root: ../shared/data/affectnet, weight: 1.0, train_fraction: $1},"\
       "{type: fer2013, root: ../shared/data/fer2013, usage: Training, role: train, weight: 0.4}]"
}
pids=()
for f in $FRACTIONS; do
  fit=($PY -m train fit --config configs/default.yaml --run-dir "$OUT/f$f" --set seed="$SEED"
       --set train.train_on_val=true --set "$(datasets "$f")")
  if [ "${PARALLEL:-1}" = 1 ]; then
    "${fit[@]}" --set train.threads=1 "$@" > "$OUT/fit_f$f.log" 2>&1 &
    pids+=($!)
  else
    "${fit[@]}" "$@"
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
for f in $FRACTIONS; do
  $PY -m train eval "$OUT/f$f/checkpoint.pt" --split test -o "$OUT/f$f/eval_test"
done
$PY - "$OUT" $FRACTIONS <<'PY'
import json, sys
out, fractions = sys.argv[1], sys.argv[2:]
print("| AffectNet fraction | faces trained on | accuracy [95 % CI] | valence CCC | arousal CCC |")
print("| --- | --- | --- | --- | --- |")
for f in fractions:
    faces = sum("/affectnet/" in p for p in json.load(open(f"{out}/f{f}/splits.json"))["train"])
    m = json.load(open(f"{out}/f{f}/eval_test/metrics.json"))
    acc, ci = m["expression"]["accuracy"], m["ci"]["accuracy"]
    print(f"| {f} | {faces} | {acc:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | "
          f"{m['valence']['ccc']:.3f} | {m['arousal']['ccc']:.3f} |")
PY
