#!/usr/bin/env bash
# Set up everything affectcam needs in ./.venv (idempotent). Uses pip + venv:
# torch/torchvision pinned to the versions this project is tested with.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q torch==2.14.1 torchvision==0.29.1
pip install -q -e '.[dev]'
# Browser for the dashboard's end-to-end test (Debian's Chromium; Playwright
# cannot download its own browsers offline).
if [ "${AFFECTCAM_SKIP_BROWSER:-0}" != 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "setup: could not install chromium; browser tests will skip"
  else
    echo "setup: chromium not found; install it (apt-get install chromium) for the browser test"
  fi
fi
