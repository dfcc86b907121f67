#!/usr/bin/env bash
# What each choice of the recipe buys: short fits of $CONFIG (default configs/default.yaml), each with
# one change, all on the same short schedule ($SCHEDULE) and the same splits, read on the validation
# parts only (AffectNet 8 %, RAF-DB 5 %, FER+ 5 %: what may pick a recipe; the held-out parts stay
# the judge of the shipped model and are not read here). A short schedule ranks choices, it does
# not give the figures of a full fit.
# Usage: bash bench/ablations.sh [OUT_DIR] [extra `train fit` args…]
#   VARIANTS="recipe no_affectnet96 …"   which rows (default: all of the table below)
#   SCHEDULE="--set train.epochs=3 …"    the short schedule every row shares
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/ablations}; shift || true
PY=${PYTHON:-.venv/bin/python}
CONFIG=${CONFIG:-configs/default.yaml}
# 3 x 15,360 draws with the first four blocks frozen: ~10 min a row on 2 cores at 112 px.
SCHEDULE=${SCHEDULE:-"--set train.epochs=3 --set train.samples_per_epoch=15360 --set train.freeze_blocks=4"}
# name → the change (`train fit` arguments); data.datasets entries: 0 affectnet, 1 affectnet96,
# 2 rafdb, 3 ferplus (configs/default.yaml).
declare -A CHANGE=(
  [recipe]=""
  [no_affectnet96]="--set data.datasets.1.role=test"
  [affectnet96_smoothing_0.1]="--set data.datasets.1.label_smoothing=0.1"
  [affectnet96_weight_0.10]="--set data.datasets.1.weight=0.10"
  [affectnet_weight_0.45]="--set data.datasets.0.weight=0.45"
  [balance_oversample]="--set data.balance=oversample"
  [input_160]="--set model.input_size=160"
  [va_prior_0.5]="--set loss.va_prior=0.5"   # faces without V/A learn their class's mean V/A (issue 26)
)
ORDER="recipe no_affectnet96 affectnet96_smoothing_0.1 affectnet96_weight_0.10 affectnet_weight_0.45 balance_oversample input_160 va_prior_0.5"
VARIANTS=${VARIANTS:-$ORDER}
mkdir -p "$OUT"
for v in $VARIANTS; do
  [ -n "${CHANGE[$v]+set}" ] || { echo "bench/ablations.sh: unknown variant $v (known: $ORDER)" >&2; exit 2; }
done
for v in $VARIANTS; do
  run="$OUT/$v"
  if [ -f "$run/last.pt" ]; then $PY -m train fit --run-dir "$run" --resume   # killed or finished earlier
  else
    # shellcheck disable=SC2086  # SCHEDULE and the change are word lists
    $PY -m train fit --config "$CONFIG" --run-dir "$run" $SCHEDULE ${CHANGE[$v]} "$@"
  fi
  for part in affectnet rafdb ferplus; do
    [ -f "$run/val_$part/metrics.json" ] || \
      $PY -m train eval "$run/checkpoint.pt" --run-dir "$run" --split val --source "$part" -o "$run/val_$part" --overwrite
  done
done
$PY - "$OUT" $VARIANTS <<'PY'
import json, sys
out, variants = sys.argv[1], sys.argv[2:]
print("| variant | fit min | AffectNet val acc | valence CCC | arousal CCC | RAF-DB val acc | FER+ val acc |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for v in variants:
    m = {p: json.load(open(f"{out}/{v}/val_{p}/metrics.json")) for p in ("affectnet", "rafdb", "ferplus")}
    run = json.load(open(f"{out}/{v}/run.json"))
    minutes = run["train_seconds"] / 60
    a = m["affectnet"]
    print(f"| {v} | {minutes:.1f} | {a['expression']['accuracy']:.3f} | {a['valence']['ccc']:.3f} | "
          f"{a['arousal']['ccc']:.3f} | {m['rafdb']['expression']['accuracy']:.3f} | "
          f"{m['ferplus']['expression']['accuracy']:.3f} |")
PY
