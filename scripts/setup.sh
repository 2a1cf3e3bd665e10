#!/usr/bin/env bash
# Creates .venv with the pinned packages (requirements/ci.txt) and jina-onnx in editable mode, with uv.
#
# uv keeps every wheel it installed unpacked in its cache (~/.cache/uv) and links them into a new environment,
# so a second clone on the same machine gets its .venv in seconds instead of pip's minutes (docs/testing.md).
# .venv is keyed by the hash of the lock file and pyproject.toml: re-running is free while they are unchanged;
# after a change, or after a set-up that did not finish, .venv is rebuilt from scratch (`uv pip sync` makes it
# exactly the lock, nothing left over). The key is written last, so a half-built .venv is never taken as done.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
stamp=.venv/.jina-onnx-installed
want=$(cat requirements/ci.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
uv_version=0.13.8
tools=${XDG_CACHE_HOME:-$HOME/.cache}/jina-onnx/tools/uv-$uv_version
uv=$tools/bin/uv
if [ ! -x "$uv" ]; then
  echo "setup: installing uv $uv_version into $tools" >&2
  mkdir -p "$(dirname "$tools")"
  partial=$(mktemp -d "$tools.partial-XXXXXX")
  trap 'rm -rf "$partial"' EXIT
  "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$partial" \
    "uv==$uv_version"
  rm -rf "$tools" && mv "$partial" "$tools"  # whole or not at all
fi
echo "setup: installing the pinned packages into .venv (from uv's cache when it has them)" >&2
rm -f "$stamp"
export UV_PYTHON_DOWNLOADS=never  # the interpreter is $PYTHON (python3), never one uv would download
# pip's find-links (the team machines keep the CPU build of torch in /opt/wheels) apply to uv too.
links=()
for link in ${PIP_FIND_LINKS:-}; do links+=(--find-links "$link"); done
"$uv" venv --quiet --clear --python "$python" .venv
# Bytecode is compiled here, once: where PYTHONDONTWRITEBYTECODE is set (as on the team machines), every
# process of the tests would otherwise compile torch, transformers and Ray from source on import.
"$uv" pip sync --quiet --compile-bytecode --python .venv/bin/python "${links[@]}" requirements/ci.txt
"$uv" pip install --quiet --python .venv/bin/python --no-deps -e .
echo "$want" > "$stamp"
