#!/usr/bin/env bash
# One command for the browser example: install its npm packages (once), then serve the page and MODEL_DIR.
#   bash examples/browser/run.sh ~/.cache/jina-onnx/jina-embedding-t-en-v1 [--dtype q8] [--port 8000]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/../../scripts/setup-js.sh" --no-browser
exec python3 "$here/serve.py" "$@"
