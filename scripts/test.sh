#!/usr/bin/env bash
# The test suite, fully offline: sets up .venv if needed, runs the static checks (scripts/lint.sh), then pytest
# (extra args pass through to pytest). Each step prints its seconds.
#   bash scripts/test.sh          the quick set CI runs: the slow checks at reduced sizes, listed at the end
#   bash scripts/test.sh --full   the same tests at their original sizes (docs/testing.md)
set -euo pipefail
cd "$(dirname "$0")/.."
timed() {  # timed NAME COMMAND...: runs it, then says how long it took (also when it failed)
    local name=$1 start=$SECONDS rc=0
    shift
    "$@" || rc=$?
    echo "test: $name took $((SECONDS - start)) s" >&2
    return "$rc"
}
timed "set-up of .venv (scripts/setup.sh)" bash scripts/setup.sh
timed "set-up of the JavaScript consumers (scripts/setup-js.sh)" bash scripts/setup-js.sh
timed "ruff and mypy (scripts/lint.sh)" bash scripts/lint.sh
# Servers and Ray clusters in the tests must listen on loopback only, and Ray binds every interface it finds
# (docs/architecture.md, pitfall 10): the tests run in a network namespace whose only interface is loopback.
# They need no network; an unprivileged user namespace (unshare -rn) makes one without root.
if [ -z "${JINA_ONNX_LOOPBACK_NETNS:-}" ] && unshare -rn sh -c 'ip link set lo up' 2>/dev/null; then
    timed pytest unshare -rn sh -c 'ip link set lo up && exec "$@"' sh \
        env JINA_ONNX_LOOPBACK_NETNS=1 .venv/bin/python -m pytest "$@"
    exit
fi
echo "test: cannot make a loopback-only network namespace here (unshare -rn); servers and Ray in the tests" \
     "may listen on other interfaces" >&2
timed pytest .venv/bin/python -m pytest "$@"
