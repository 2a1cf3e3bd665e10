"""The compatibility table: other runtimes load a jina-onnx export directory as it is, and their vectors are
compared with jina-onnx's on the same texts.

    python -m benchmarks interop [--models t,s,b,l,minilm]   # benchmarks/results/interop-<date>.json and .md

Consumers: sentence-transformers' ONNX backend (fp32 `onnx/model.onnx`, int8 `onnx/model_quantized.onnx`),
fastembed's custom-model API, transformers.js in Node (fp32, q8) and in headless Chromium (WebAssembly, fp32).
fp32 (the browser's too) is judged by the max abs difference to jina-onnx fp32 (<= 1e-4), int8 by int8's export
gate against jina-onnx fp32 (mean cosine >= 0.99). A consumer that cannot run a model gets its error in the table. tests/test_interop.py runs the same functions in CI (t, s, b, l, MiniLM).
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "browser"
TEXTS = [
    "how is the weather today",
    "What is the current weather like today?",
    "A man is playing a guitar.",
    "word " * 600,  # past every model's maximum length: shows how each consumer truncates
]
FP32_MAX_DIFF = 1e-4


def settings(directory: Path) -> tuple[str, bool]:
    """(pooling, normalize) from the directory's sentence-transformers files, as every consumer reads them."""
    from jina_onnx.foreign import foreign_manifest

    manifest = foreign_manifest(directory)
    return manifest.pooling.value, manifest.normalize


def jina_vectors(directory: Path, precision: str = "fp32", texts: list[str] | None = None) -> np.ndarray:
    from jina_onnx import build_model

    with warnings.catch_warnings():  # TEXTS' last text is over the limit on purpose: no TruncationWarning
        warnings.simplefilter("ignore", UserWarning)
        return build_model(directory, device="cpu", precision=precision).encode(texts or TEXTS)


def cut_like_transformers_js(directory: Path, texts: list[str], precision: str = "fp32") -> np.ndarray:
    """jina-onnx's vectors of `texts` with transformers.js' truncation: it tokenizes in full, end token included,
    then keeps the first max_length ids, so a text over the limit loses its end token ([SEP], </s>) where
    sentence-transformers, fastembed and jina-onnx keep it (docs/interop.md)."""
    from tokenizers import Tokenizer

    from jina_onnx import build_model
    from jina_onnx.similarity import l2_normalize

    model = build_model(directory, device="cpu", precision=precision)
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    vectors = model.embed_token_ids([e.ids[: model.max_length] for e in tokenizer.encode_batch(texts)])
    return l2_normalize(vectors) if model.manifest.normalize else vectors


def sentence_transformers_vectors(directory: Path, file_name: str = "onnx/model.onnx") -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(directory), backend="onnx", device="cpu", model_kwargs={"file_name": file_name})
    return np.asarray(model.encode(TEXTS))


def fastembed_vectors(directory: Path) -> np.ndarray:
    """fastembed's documented custom-model API on the local directory: it pools the first (token-level) output."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    from jina_onnx.manifest import Precision, load_manifest

    manifest = load_manifest(directory)
    # One registration per graph: fastembed's registry is process-wide and a name cannot be registered twice.
    name = f"jina-onnx-interop/{directory.name}-{manifest.variants[Precision.FP32].sha256[:12]}"
    if name not in [m["model"] for m in TextEmbedding.list_supported_models()]:
        TextEmbedding.add_custom_model(
            model=name,
            pooling={"mean": PoolingType.MEAN, "cls": PoolingType.CLS}[manifest.pooling.value],
            normalization=manifest.normalize,
            sources=ModelSource(hf=name),
            dim=manifest.dim,
            model_file="onnx/model.onnx",
        )
    model = TextEmbedding(name, specific_model_path=str(directory), local_files_only=True)
    return np.asarray(list(model.embed(TEXTS)))


class ConsumerError(RuntimeError):
    """A consumer could not run the model; the message is the consumer's own error, first line."""


def node_vectors(directory: Path, dtype: str = "fp32") -> np.ndarray:
    """transformers.js in Node (examples/browser/embed-node.mjs), remote models off."""
    pooling, normalize = settings(directory)
    done = subprocess.run(
        ["node", str(EXAMPLE / "embed-node.mjs"), str(directory), dtype, pooling, str(normalize).lower()],
        input=json.dumps(TEXTS),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:  # Node prints the source line, then "SomeError: message", then the stack
        lines = [line for line in done.stderr.splitlines() if re.match(r"^\w*Error: ", line)]
        raise ConsumerError(lines[0].strip() if lines else done.stderr.strip()[-400:])
    return np.asarray(json.loads(done.stdout), dtype=np.float32)


@contextlib.contextmanager
def example_server(directory: Path, dtype: str = "fp32") -> Iterator[str]:
    """examples/browser/serve.py on a free loopback port, stopped on exit; yields its URL."""
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE / "serve.py"), str(directory), "--port", "0", "--dtype", dtype],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "serving DIR at http://127.0.0.1:PORT/"
        if "http://" not in line:
            raise ConsumerError(f"the example server did not start: {line!r}")
        yield line.split(" at ")[-1].strip()
    finally:
        process.terminate()
        process.wait(timeout=30)


def browser_page(directory: Path, screenshot: Path | None = None) -> dict[str, Any]:
    """Headless Chromium opens the example page for `directory`; the page's numbers (texts, vectors, cosine),
    the URLs it asked outside the server for (must be none) and its console."""
    with example_server(directory) as url:
        done = subprocess.run(
            ["node", str(EXAMPLE / "screenshot.mjs"), url, str(screenshot or "")],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    if done.returncode != 0:
        raise ConsumerError(done.stderr.strip()[-600:])
    page = json.loads(done.stdout)
    if "error" in page:
        raise ConsumerError(page["error"].splitlines()[0])
    return page


def size_mb(directory: Path) -> float:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) / 1e6


def versions() -> dict[str, str]:
    """The consumers' versions: Python packages, and the npm packages the lock file installed."""
    from jina_onnx.machine import package_versions

    found = package_versions(("jina-onnx", "sentence-transformers", "optimum-onnx", "fastembed", "onnxruntime"))
    for name in ("@huggingface/transformers", "onnxruntime-web", "onnxruntime-node"):
        package = EXAMPLE / "node_modules" / name / "package.json"
        if package.is_file():
            found[name] = json.loads(package.read_text())["version"]
    return found


def difference(vectors: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    cosines = np.sum(vectors * reference, axis=1) / (
        np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1)
    )
    return {
        "max_abs_diff": float(np.abs(vectors - reference).max()),
        "min_cosine": float(cosines.min()),
        "mean_cosine": float(cosines.mean()),
    }


def measure(directory: Path) -> dict[str, Any]:
    """One row of the table: each consumer's difference to jina-onnx fp32 on the same texts, or its error."""
    from jina_onnx.gates import GATES
    from jina_onnx.manifest import Precision, load_manifest

    manifest = load_manifest(directory)
    reference = jina_vectors(directory)
    js_reference = cut_like_transformers_js(directory, TEXTS)
    int8_gate = GATES[Precision.INT8].mean_cosine
    row: dict[str, Any] = {
        "model": manifest.name,
        "variants": [p.value for p in manifest.variants],
        "jina-onnx": jina_cell(manifest),
    }

    def attempt(key: str, run: Callable[[], tuple[np.ndarray, np.ndarray]], passes: Callable[[dict], bool]) -> None:
        try:
            result = difference(*run())
            row[key] = result | {"passed": passes(result)}
        except Exception as error:  # noqa: BLE001  (any failure of a consumer is the finding, recorded as is)
            row[key] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}

    def fp32(result: dict) -> bool:
        return result["max_abs_diff"] <= FP32_MAX_DIFF

    def int8(result: dict) -> bool:
        return result["mean_cosine"] >= int8_gate

    def browser() -> tuple[np.ndarray, np.ndarray]:
        page = browser_page(directory)
        if page["outside"]:
            raise ConsumerError(f"the page fetched from outside the server: {page['outside']}")
        return np.asarray(page["vectors"], dtype=np.float32), jina_vectors(directory, texts=page["texts"])

    attempt("sentence-transformers ONNX", lambda: (sentence_transformers_vectors(directory), reference), fp32)
    attempt("fastembed", lambda: (fastembed_vectors(directory), reference), fp32)
    node_fp32 = functools.cache(lambda: node_vectors(directory))  # one Node run for both comparisons
    attempt("transformers.js (Node)", lambda: (node_fp32(), reference), fp32)
    # The same vectors against jina-onnx given transformers.js' truncation: the over-length text is the only
    # one that differs above, and only by the end token transformers.js cuts off.
    attempt("transformers.js (Node), its truncation", lambda: (node_fp32(), js_reference), fp32)
    attempt("browser", browser, fp32)
    if Precision.INT8 in manifest.variants:
        quantized = "onnx/model_quantized.onnx"
        attempt("jina-onnx int8", lambda: (jina_vectors(directory, "int8"), reference), int8)
        attempt(
            "sentence-transformers ONNX int8",
            lambda: (sentence_transformers_vectors(directory, quantized), reference),
            int8,
        )
        attempt("transformers.js (Node) q8", lambda: (node_vectors(directory, "q8"), reference), int8)
    return row


def render(rows: list[dict[str, Any]]) -> str:
    """The README's compatibility table: fp32 as the max abs difference to jina-onnx fp32 (jina-onnx itself: to
    PyTorch, from its manifest; the browser's too), int8 as mean cosine, a consumer that cannot run the model as
    "no" with a footnote giving its error."""
    notes: dict[str, str] = {}

    def cell(row: dict[str, Any], fp32_key: str, int8_key: str | None = None) -> str:
        parts = []
        for key, label in ((fp32_key, "fp32"), (int8_key, "int8")):
            result = row.get(key) if key else None
            if result is None:
                continue
            if "error" in result:
                note = notes.setdefault(result["error"], str(len(notes) + 1))
                return f"no ({note})"
            value = f"{result['max_abs_diff']:.0e}"
            if label == "int8":
                value = f"cos {result['mean_cosine']:.5f}"
            parts.append(f"{label} {value}" + ("" if result["passed"] else " FAILS"))
        return ", ".join(parts)

    lines = [
        "| model | jina-onnx (vs PyTorch) | sentence-transformers ONNX | fastembed | transformers.js, Node | "
        "browser (Chromium, WASM) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [
            row["jina-onnx"],
            cell(row, "sentence-transformers ONNX", "sentence-transformers ONNX int8"),
            cell(row, "fastembed"),
            cell(row, "transformers.js (Node), its truncation", "transformers.js (Node) q8"),
            cell(row, "browser"),
        ]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    over = {
        r["model"]: r["transformers.js (Node)"] for r in rows if "min_cosine" in r.get("transformers.js (Node)", {})
    }
    lines.append("")
    lines.append(
        "transformers.js is compared with jina-onnx given its own truncation: it cuts an over-length text after "
        "adding the end token, which drops it; against our truncation that text has cos "
        + ", ".join(f"{v['min_cosine']:.4f} ({k})" for k, v in over.items())
        + "."
    )
    lines += [f"({n}) {reason}" for reason, n in notes.items()]
    return "\n".join(lines) + "\n"


def jina_cell(manifest: Any) -> str:
    """jina-onnx's own column: the export gates' numbers against PyTorch, from the manifest."""
    from jina_onnx.manifest import Precision

    parts = [f"fp32 {manifest.variants[Precision.FP32].parity.max_abs_diff:.0e}"]
    if Precision.INT8 in manifest.variants:
        parts.append(f"int8 cos {manifest.variants[Precision.INT8].parity.mean_cosine:.5f}")
    return ", ".join(parts)
