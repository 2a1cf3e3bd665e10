"""Does `precision="auto"` pick well? Its choice against the two fp32 graphs, through `encode`, same run.

`auto` times its candidates once on first load (jina_onnx.loadplan) on a synthetic workload; this checks the
verdict on real text: all 3,000 STS-dev sentences, alternating the three models round by round. The issue's
bar: auto >= 0.97x the faster of fp32 and fp32-opt.

    python -m benchmarks.auto --models minilm,t      # ONNX Runtime only ($JINA_ONNX_BACKEND=onnxruntime)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

from .common import machine_facts, prepared_artifact, prepared_minilm, write_results
from .sts import load_sts


def measure(model_name: str, rounds: int) -> dict:
    from jina_onnx import build_model

    artifact = prepared_minilm() if model_name == "minilm" else prepared_artifact(model_name)
    first, second, _ = load_sts()
    texts = first + second
    with tempfile.TemporaryDirectory() as home:
        os.environ["JINA_ONNX_HOME"] = home  # a fresh cache: auto measures its candidates now, as on first use
        models = {p: build_model(artifact, device="cpu", precision=p) for p in ("auto", "fp32", "fp32-opt")}
    chosen = f"{models['auto'].backend} {models['auto'].precision}"
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        model.encode(texts[:256])  # warm-up
    for _ in range(rounds):
        for name, model in models.items():
            started = time.perf_counter()
            model.encode(texts)
            seconds[name].append(time.perf_counter() - started)
            time.sleep(0.5)
    rate = {name: len(texts) / statistics.median(s) for name, s in seconds.items()}
    best_fp32 = max(rate["fp32"], rate["fp32-opt"])
    return {
        "auto_runs": chosen,
        "texts_per_s": {k: round(v, 1) for k, v in rate.items()},
        "auto_vs_best_fp32": round(rate["auto"] / best_fp32, 3),
        "texts": len(texts),
        "rounds": rounds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="minilm,t")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    os.environ.setdefault("JINA_ONNX_BACKEND", "onnxruntime")
    results = {name: measure(name, args.rounds) for name in args.models.split(",")}
    facts = machine_facts()
    lines = [
        f"# precision=auto on real text, {facts['date']}",
        "",
        f"Machine: {facts['cpu']}, {facts['physical_cores']} physical cores; backend "
        f"{os.environ['JINA_ONNX_BACKEND']}. Command: `python -m benchmarks.auto --models {args.models}`. "
        f"Texts/s through `encode` on all 3,000 STS-dev sentences, median of {args.rounds} alternating rounds.",
        "",
        "| model | auto runs | auto | fp32 | fp32-opt | auto / faster fp32 |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        rate = r["texts_per_s"]
        lines.append(
            f"| {name} | {r['auto_runs']} | {rate['auto']:,.0f} | {rate['fp32']:,.0f} | "
            f"{rate['fp32-opt']:,.0f} | {r['auto_vs_best_fp32']:.3f}x |"
        )
    markdown = "\n".join(lines) + "\n"
    write_results(f"auto-{facts['date']}", {"machine": facts, "models": results}, markdown)
    print(markdown)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
