#!/usr/bin/env bash
# The JavaScript consumers the interop tests run (tests/test_interop.py) and the browser example needs:
# transformers.js and puppeteer-core from npm (examples/browser/package-lock.json), and headless Chromium from
# Debian's chromium-headless-shell package. Re-running is cheap: each part installs only when it is missing or
# the lock file changed. --no-browser skips Chromium (the example itself runs in any browser).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "setup-js: Node.js 20+ and npm are needed (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
example=examples/browser
stamp=$example/node_modules/.jina-onnx-installed
want=$(sha256sum $example/package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup-js: installing the pinned npm packages into $example/node_modules" >&2
  # onnxruntime-node's install script would fetch CUDA binaries from outside the registries; its CPU
  # binaries ship inside the package, so the script is skipped (docs/interop.md).
  ONNXRUNTIME_NODE_INSTALL_CUDA=skip ONNXRUNTIME_NODE_INSTALL=skip \
    npm ci --prefix "$example" --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi
if [ "${1:-}" != "--no-browser" ] && [ -z "${CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium-headless-shell ]; then
  echo "setup-js: installing Debian's chromium-headless-shell" >&2
  if [ "$(id -u)" != 0 ]; then
    echo "setup-js: installing Chromium needs root: apt-get install chromium-headless-shell (or set CHROMIUM)" >&2
    exit 1
  fi
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium-headless-shell >/dev/null
fi
