#!/usr/bin/env bash
# Creates .venv with the pinned packages (requirements/ci.txt) and jina-onnx in editable mode.
# Re-running is cheap: it reinstalls only when the lock file or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
stamp=.venv/.jina-onnx-installed
want=$(cat requirements/ci.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setup: installing the pinned packages into .venv (a few minutes the first time)" >&2
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements/ci.txt
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
