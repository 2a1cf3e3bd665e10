"""Serve the browser example on loopback: the page, transformers.js and onnxruntime-web from node_modules,
and one model directory in the Hugging Face layout (a `jina-onnx export` directory, or another tool's).

    python examples/browser/serve.py ~/.cache/jina-onnx/jina-embedding-t-en-v1   # then open the printed URL

(`run.sh` installs the npm packages first.) Nothing is fetched from outside: every file the page needs comes
from this server, which answers only for the page, the two packages' dist folders and the model directory.
Standard library only; the page and its reading of the directory are in app.js and feature-extractor.js.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

HERE = Path(__file__).resolve().parent
PACKAGES = HERE / "node_modules"
VENDOR = {  # URL prefix -> folder
    "/vendor/transformers/": PACKAGES / "@huggingface" / "transformers" / "dist",
    "/vendor/onnxruntime-web/": PACKAGES / "onnxruntime-web" / "dist",
    "/vendor/onnxruntime-common/": PACKAGES / "onnxruntime-common" / "dist" / "esm",
}
TEXTS = [
    "how is the weather today",
    "What is the current weather like today?",
    "A man is playing a guitar.",
    "The cat sleeps on the sofa.",
]


def page_settings(model: Path, dtype: str) -> dict:
    """What app.js runs: the model's name under /models/, and pooling and normalization from its
    sentence-transformers files (the same files Python's consumers read)."""
    modules = json.loads((model / "modules.json").read_text(encoding="utf-8"))
    pooling_path = next(m["path"] for m in modules if m["type"].endswith("Pooling"))
    pooling = json.loads((model / pooling_path / "config.json").read_text(encoding="utf-8"))
    mode = "cls" if pooling.get("pooling_mode_cls_token") else "mean"
    normalize = any(m["type"].endswith("Normalize") for m in modules)
    return {"model": model.name, "dtype": dtype, "pooling": mode, "normalize": normalize, "texts": TEXTS}


class Handler(SimpleHTTPRequestHandler):
    """Maps the few URL prefixes to their folders; anything else is a 404."""

    def __init__(self, *args, model: Path, settings: dict, **kwargs) -> None:
        self.model, self.settings = model, settings
        super().__init__(*args, directory=str(HERE), **kwargs)

    extensions_map = {
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".json": "application/json",
        ".onnx": "application/octet-stream",
        ".html": "text/html",
    }

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if urlsplit(self.path).path == "/page.json":
            body = json.dumps(self.settings).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def translate_path(self, path: str) -> str:
        path = unquote(urlsplit(path).path)
        roots = {"/models/" + self.model.name + "/": self.model, **VENDOR}
        for prefix, folder in roots.items():
            if path.startswith(prefix):
                target = (folder / path[len(prefix) :]).resolve()
                # A name that climbs out of its folder gets a 404, never another file of this machine.
                return str(target) if target.is_relative_to(folder.resolve()) else str(HERE / "missing")
        if path in ("/", "/index.html", "/app.js", "/feature-extractor.js"):
            return str(HERE / (path.lstrip("/") or "index.html"))
        return str(HERE / "missing")

    def end_headers(self) -> None:
        # Cross-origin isolation lets onnxruntime-web use its threaded WebAssembly build.
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's signature)
        sys.stderr.write(f"serve: {format % args}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="model directory in the Hugging Face layout")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "q8"], help="q8: onnx/model_quantized.onnx")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port")
    args = parser.parse_args()
    model = args.model.expanduser().resolve()
    if not (model / "modules.json").is_file() or not (model / "onnx" / "model.onnx").is_file():
        parser.error(f"{model} has no modules.json or onnx/model.onnx: export it with `jina-onnx export`")
    missing = [str(p) for p in VENDOR.values() if not p.is_dir()]
    if missing:
        parser.error(f"npm packages missing ({', '.join(missing)}): run `bash {HERE / 'run.sh'} {model}`")
    handler = partial(Handler, model=model, settings=page_settings(model, args.dtype))
    with ThreadingHTTPServer((args.host, args.port), handler) as server:
        print(f"serving {model} at http://{args.host}:{server.server_address[1]}/", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
