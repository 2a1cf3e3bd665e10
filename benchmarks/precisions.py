"""Retrieval quality of each output precision: STS-dev Spearman x100 on the pairs the int8 ranges were not
calibrated on (300-1499), the real all-MiniLM-L6-v2, fp32 graph.

Similarity per precision as sentence-transformers evaluates them: cosine for float32, float16, int8 and uint8
(on the integer values), and for binary / ubinary the cosine of the +-1 vectors their bits stand for
(1 - 2 * Hamming distance / dim).

    python -m benchmarks.precisions
"""

from __future__ import annotations

import numpy as np

from .common import machine_facts, prepared_minilm, write_results
from .sts import load_sts, sts_spearman

HELD_OUT = slice(300, None)  # pairs 0-299 calibrated the int8 / uint8 ranges at export


def as_vectors(encoded: np.ndarray, precision: str, dim: int) -> np.ndarray:
    if precision in ("binary", "ubinary"):
        bits = np.unpackbits(
            (encoded.astype(np.int16) + 128).astype(np.uint8) if precision == "binary" else encoded, axis=-1
        )[:, :dim]
        return bits.astype(np.float32) * 2 - 1
    return encoded.astype(np.float32)


def main() -> int:
    from jina_onnx import build_model
    from jina_onnx.quantize import OUTPUT_PRECISIONS

    first, second, scores = load_sts()
    first, second, scores = first[HELD_OUT], second[HELD_OUT], scores[HELD_OUT]
    model = build_model(prepared_minilm(), device="cpu", precision="fp32", backend="onnxruntime")
    rows = {}
    for precision in OUTPUT_PRECISIONS:
        a = as_vectors(model.encode(first, output_precision=precision), precision, model.dim)
        b = as_vectors(model.encode(second, output_precision=precision), precision, model.dim)
        size = (
            a.shape[1]
            * np.dtype(
                np.float32 if precision == "float32" else np.float16 if precision == "float16" else np.int8
            ).itemsize
            if precision not in ("binary", "ubinary")
            else model.dim // 8
        )
        rows[precision] = {"spearman": round(sts_spearman(a, b, scores), 2), "bytes_per_vector": int(size)}
    facts = machine_facts()
    lines = [
        f"# Output precisions, {facts['date']}",
        "",
        "Real all-MiniLM-L6-v2 (fp32 graph), STS-dev pairs 300-1499 (int8/uint8 ranges calibrated at export on "
        "pairs 0-299). Command: `python -m benchmarks.precisions`.",
        "",
        "| output precision | STS-dev Spearman x100 | bytes per vector |",
        "|---|---|---|",
    ]
    lines += [f"| {p} | {r['spearman']:.2f} | {r['bytes_per_vector']} |" for p, r in rows.items()]
    markdown = "\n".join(lines) + "\n"
    write_results(f"output-precisions-{facts['date']}", {"machine": facts, "results": rows}, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
