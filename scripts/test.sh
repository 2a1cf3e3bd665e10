#!/usr/bin/env bash
# The test suite, fully offline: sets up .venv if needed, then runs pytest (extra args pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
