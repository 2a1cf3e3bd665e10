#!/usr/bin/env bash
# The test suite, fully offline: sets up .venv if needed, runs the static checks (scripts/lint.sh), then pytest
# (extra args pass through to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-js.sh  # transformers.js and headless Chromium for tests/test_interop.py
bash scripts/lint.sh
# Servers and Ray clusters in the tests must listen on loopback only, and Ray binds every interface it finds
# (docs/architecture.md, pitfall 10): the tests run in a network namespace whose only interface is loopback.
# They need no network; an unprivileged user namespace (unshare -rn) makes one without root.
if [ -z "${JINA_ONNX_LOOPBACK_NETNS:-}" ] && unshare -rn sh -c 'ip link set lo up' 2>/dev/null; then
    exec unshare -rn sh -c 'ip link set lo up && exec "$@"' sh \
        env JINA_ONNX_LOOPBACK_NETNS=1 .venv/bin/python -m pytest "$@"
fi
echo "test: cannot make a loopback-only network namespace here (unshare -rn); servers and Ray in the tests" \
     "may listen on other interfaces" >&2
exec .venv/bin/python -m pytest "$@"
