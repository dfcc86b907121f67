#!/usr/bin/env bash
# Soak benchmark (issue 17): the realtime loop over a looped video for 30 minutes
# (or MINUTES), resident memory sampled every 10 s; figures to docs/BENCHMARKS.md.
# Not part of the test suite. Exit status 1 when growth after warm-up exceeds 5 %
# or a frame was lost.
#   bench/soak.sh            # 30 minutes
#   MINUTES=3 bench/soak.sh  # a short check that the harness works
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
MINUTES="${MINUTES:-30}"
OUT="${OUT:-test-artifacts/soak_${MINUTES}min.json}"
mkdir -p "$(dirname "$OUT")"
echo "cpu: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'), load: $(cut -d' ' -f1-3 /proc/loadavg)"
exec "$PY" bench/soak.py --minutes "$MINUTES" --json "$OUT" "$@"
