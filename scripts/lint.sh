#!/usr/bin/env bash
# Static checks, run by scripts/test.sh before the tests: ruff (lint and format) and mypy on the package.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check runtime export benchmarks tests scripts examples
.venv/bin/ruff format --check runtime export benchmarks tests scripts examples
# mypy resolves imports from the file tree, and the package `jina_onnx` is `runtime/` with `export/` inside it
# (pyproject's package-dir): check it through a tree of links with that shape.
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/jina_onnx"
for entry in runtime/*; do
    [ "$(basename "$entry")" = "__pycache__" ] || ln -s "$PWD/$entry" "$tree/jina_onnx/"
done
ln -s "$PWD/export" "$tree/jina_onnx/export"
(cd "$tree" && "$OLDPWD/.venv/bin/mypy" --config-file "$OLDPWD/pyproject.toml" -p jina_onnx) \
    | sed "s#^jina_onnx/export/#export/#; s#^jina_onnx/#runtime/#"
echo "lint: ruff and mypy passed"
