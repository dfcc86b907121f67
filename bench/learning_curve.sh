#!/usr/bin/env bash
# How held-out accuracy grows with the number of training faces: the 65k-face recipe
# ($CONFIG, default configs/default.yaml: AffectNet, AffectNet-96, RAF-DB, FER+) refitted with every training
# dataset thinned to the same stratified fraction (data.datasets.N.train_fraction; drawn as often,
# the held-out parts the same file lists), each fit evaluated on the held-out AffectNet part (the
# judge: human labels) and the held-out RAF-DB part. The 1.0 point is the recipe itself.
# Usage: bash bench/learning_curve.sh [OUT_DIR] [extra `train fit` args…]
#   FRACTIONS="0.125 0.25 0.5 1.0"   one fit per fraction
#   PARALLEL=0    fits one after another with the recipe's threads (1: all at once, one thread each)
#   SEED=0
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/learning_curve}; shift || true
PY=${PYTHON:-.venv/bin/python}
CONFIG=${CONFIG:-configs/default.yaml}   # the 65k-face recipe (its data entries name the held-out parts)
FRACTIONS=${FRACTIONS:-"0.125 0.25 0.5 1.0"}
SEED=${SEED:-0}
TRAINED="0 1 2 3"   # the entries of configs/default.yaml's data.datasets that are trained on
mkdir -p "$OUT"
pids=()
for f in $FRACTIONS; do
  fit=($PY -m train fit --config "$CONFIG" --run-dir "$OUT/f$f" --set seed="$SEED")
  for i in $TRAINED; do fit+=(--set "data.datasets.$i.train_fraction=$f"); done
  [ -f "$OUT/f$f/last.pt" ] && fit=($PY -m train fit --run-dir "$OUT/f$f" --resume)
  if [ "${PARALLEL:-0}" = 1 ]; then
    "${fit[@]}" --set train.threads=1 "$@" > "$OUT/fit_f$f.log" 2>&1 &
    pids+=($!)
  else
    "${fit[@]}" "$@"
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
for f in $FRACTIONS; do
  for part in affectnet rafdb; do
    $PY -m train eval "$OUT/f$f/checkpoint.pt" --split test --source "$part" -o "$OUT/f$f/eval_$part" --overwrite
  done
done
$PY - "$OUT" $FRACTIONS <<'PY'
import json, sys
out, fractions = sys.argv[1], sys.argv[2:]
print("| fraction | training faces | AffectNet faces | AffectNet accuracy [95 % CI] | valence CCC | arousal CCC | RAF-DB accuracy |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for f in fractions:
    train = json.load(open(f"{out}/f{f}/splits.json"))["train"]
    m = json.load(open(f"{out}/f{f}/eval_affectnet/metrics.json"))
    r = json.load(open(f"{out}/f{f}/eval_rafdb/metrics.json"))
    acc, ci = m["expression"]["accuracy"], m["ci"]["accuracy"]
    print(f"| {f} | {len(train)} | {sum('/affectnet/' in p for p in train)} | {acc:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | "
          f"{m['valence']['ccc']:.3f} | {m['arousal']['ccc']:.3f} | {r['expression']['accuracy']:.3f} |")
PY
