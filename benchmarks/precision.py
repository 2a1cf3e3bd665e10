"""Throughput of each ONNX precision next to PyTorch fp32, and MiniLM's STS-dev Spearman per precision.

Run: python -m benchmarks.precision [--models t,s,b] [--with-l] [--rounds 5]
Writes benchmarks/results/precision-<date>.json and .md. All ratios come from this one run:
the runners alternate round by round on the same inputs (batch 32 x 128 tokens).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Callable

import numpy as np

from .common import interleaved, machine_facts, physical_cores, prepared_artifact, prepared_minilm, write_results
from .sts import load_sts, sts_spearman

BATCH, TOKENS = 32, 128
PRECISIONS = ("fp32", "fp32-opt", "int8")
TARGETS = {"t": {"int8": 2.0, "fp32-opt": 1.3}, "s": {"int8": 3.5, "fp32-opt": 1.3},
           "b": {"int8": 3.5, "fp32-opt": 1.3}, "l": {"int8": 3.5, "fp32-opt": 1.3}}


def torch_runner(size: str, feed: dict[str, np.ndarray], threads: int) -> Callable[[], None]:
    """transformers encoder + mean pooling in fp32: how the models run today."""
    import torch

    from jina_onnx.export.checkpoint import load_torch_model, read_checkpoint
    from jina_onnx.export.trace import pooled_module

    from .common import WORK

    torch.set_num_threads(threads)
    checkpoint = read_checkpoint(WORK / "checkpoints" / size)
    module = pooled_module(load_torch_model(checkpoint), checkpoint.pooling, "token_type_ids" in feed)
    args = [torch.from_numpy(feed[name]) for name in ("input_ids", "attention_mask", "token_type_ids") if name in feed]

    def run() -> None:
        with torch.inference_mode():
            module(*args)

    return run


def onnx_runner(model, feed: dict[str, np.ndarray]) -> Callable[[], None]:  # type: ignore[no-untyped-def]
    names = [i.name for i in model.session.get_inputs()]
    inputs = {name: feed[name] for name in names}
    return lambda: model.session.run(["sentence_embedding"], inputs)


def throughput(size: str, rounds: int, threads: int) -> dict[str, object]:
    from jina_onnx import build_model

    directory = prepared_artifact(size)
    rng = np.random.default_rng(0)
    feed = {"input_ids": rng.integers(1000, 30000, (BATCH, TOKENS), dtype=np.int64),
            "attention_mask": np.ones((BATCH, TOKENS), dtype=np.int64)}
    models = {p: build_model(directory, device="cpu", precision=p, threads=threads) for p in PRECISIONS}
    if "token_type_ids" in [i.name for i in models["fp32"].session.get_inputs()]:
        feed["token_type_ids"] = np.zeros((BATCH, TOKENS), dtype=np.int64)
    runners = {"torch fp32": torch_runner(size, feed, threads)}
    runners.update({f"onnx {p}": onnx_runner(m, feed) for p, m in models.items()})
    timings = interleaved(runners, rounds)
    per_second = {name: BATCH / t["median"] for name, t in timings.items()}
    base = per_second["torch fp32"]
    return {
        "sentences_per_second": per_second,
        "seconds_per_batch": timings,
        "speedup_vs_torch_fp32": {name: v / base for name, v in per_second.items()},
    }


def minilm_quality() -> dict[str, float]:
    from sentence_transformers import SentenceTransformer

    from jina_onnx import build_model
    from jina_onnx.export.synthetic import minilm_checkpoint

    first, second, scores = load_sts()
    reference = SentenceTransformer(str(minilm_checkpoint()), device="cpu")
    spearman = {"sentence-transformers fp32": sts_spearman(reference.encode(first), reference.encode(second), scores)}
    directory = prepared_minilm()
    for precision in ("fp32", "fp32-opt", "fp16", "int8"):
        model = build_model(directory, device="cpu", precision=precision)
        spearman[f"onnx {precision}"] = sts_spearman(model.encode(first, batch_size=64),
                                                     model.encode(second, batch_size=64), scores)
    return spearman


def markdown(results: dict[str, dict[str, object]], quality: dict[str, float], facts: dict[str, object]) -> str:
    lines = [f"# Precision benchmark, {facts['date']}", "",
             f"CPU: {facts['cpu']} ({facts['physical_cores']} physical cores, {', '.join(facts['cpu_flags'])}); "
             f"onnxruntime {facts['onnxruntime']}; batch {BATCH} x {TOKENS} tokens; sentences/s, median of the rounds.",
             "", "| model | torch fp32 | ONNX fp32 | ONNX fp32-opt | ONNX int8 | fp32-opt vs torch | int8 vs torch |",
             "|---|---|---|---|---|---|---|"]
    for size, r in results.items():
        sps, ratio = r["sentences_per_second"], r["speedup_vs_torch_fp32"]
        target = TARGETS[size]

        def mark(key: str) -> str:
            value = ratio[f"onnx {key}"]
            return f"{value:.2f}x ({'meets' if value >= target[key] else 'misses'} {target[key]}x)"

        lines.append(f"| {size} | {sps['torch fp32']:.1f} | {sps['onnx fp32']:.1f} | {sps['onnx fp32-opt']:.1f} | "
                     f"{sps['onnx int8']:.1f} | {mark('fp32-opt')} | {mark('int8')} |")
    if quality:
        lines += ["", "all-MiniLM-L6-v2, STS-dev Spearman x100:", "", "| runtime | Spearman |", "|---|---|"]
        lines += [f"| {name} | {value:.2f} |" for name, value in quality.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="t,s,b", help="comma-separated sizes from t,s,b,l")
    parser.add_argument("--with-l", action="store_true", help="add the l model (slow: 335M parameters)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args(argv)
    sizes = [s for s in args.models.split(",") if s] + (["l"] if args.with_l and "l" not in args.models else [])
    threads = physical_cores()
    facts = machine_facts()
    results = {}
    for size in sizes:
        print(f"benchmark: {size} ...", file=sys.stderr)
        results[size] = throughput(size, args.rounds, threads)
        print({k: round(v, 2) for k, v in results[size]["speedup_vs_torch_fp32"].items()}, file=sys.stderr)
    quality = {} if args.skip_quality else minilm_quality()
    data = {"machine": facts, "threads": threads, "batch": BATCH, "tokens": TOKENS, "throughput": results,
            "minilm_sts_spearman": quality}
    stem = f"precision-{dt.date.today().isoformat()}"
    json_path, md_path = write_results(stem, data, markdown(results, quality, facts))
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
