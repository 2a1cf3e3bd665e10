"""Soak: embed without pause for N minutes and record RSS over time; it must stay flat.

Run: python -m benchmarks.soak --minutes 30 [--model s] [--threads-encoding 4]
Writes benchmarks/results/soak-<date>-<engine>.json and .md. Inputs cycle through STS-dev sentences and
passages of every length up to 512 tokens, from several threads sharing one model, so every
input shape and the concurrent path are exercised. Growth is measured from the end of warm-up
(the first 10% of the run, at least one minute, after all threads have run the largest batches at
once) to the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import threading
import time
import warnings

from .common import machine_facts, prepared_artifact, write_results
from .sts import load_sts


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--model", default="t", help="size letter of the synthetic model (t, s, b, l)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "onnxruntime", "openvino"],
        help="CPU engine (auto, as build_model: OpenVINO bf16 where it is installed and faster)",
    )
    parser.add_argument("--threads-encoding", type=int, default=4, help="Python threads calling encode")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between RSS samples")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # over-long passages are truncated on purpose

    from jina_onnx import build_model
    from jina_onnx.batching import bucket_length
    from jina_onnx.engines.openvino import row_bucket

    model = build_model(prepared_artifact(args.model), device="cpu", precision=args.precision, backend=args.backend)
    first, second, _ = load_sts()
    sentences = first + second
    stop = threading.Event()
    encoded = [0] * args.threads_encoding

    def work(worker: int) -> None:
        rng = random.Random(worker)
        while not stop.is_set():
            batch = [rng.choice(sentences) for _ in range(rng.randint(1, 48))]
            batch.append("word " * rng.randint(1, 600))  # a new length almost every call
            model.encode(batch, batch_size=rng.choice([1, 8, 32]))
            encoded[worker] += len(batch)

    # Warm-up reaches the steady-state peak on purpose: every thread runs a full token budget of
    # 512-token passages at the same moment, so ONNX Runtime's arena grows to its concurrent
    # high-water mark now. Left to chance, that coincidence arrives minutes into the run as one
    # step of about 6% (seen in the first 30-minute run), which is the arena's bound, not a leak.
    barrier = threading.Barrier(args.threads_encoding)

    def peak_load() -> None:
        for _ in range(3):
            barrier.wait()
            model.encode(["word " * 600] * 32, batch_size=32)

    warmers = [threading.Thread(target=peak_load) for _ in range(args.threads_encoding)]
    for t in warmers:
        t.start()
    for t in warmers:
        t.join()
    shapes = {}
    if model.backend == "openvino":
        # OpenVINO keeps kernels for every input shape it meets (jina_onnx.engines.openvino.row_bucket): its RSS rises
        # until every shape the run can produce has turned up, rare ones many minutes in. Visiting each once
        # puts that ceiling in the warm-up, as the peak load does for ONNX Runtime's arena, and records it.
        before = rss_mb()
        visited = []
        for width in sorted({bucket_length(n, model.max_length) for n in range(1, model.max_length + 1)}):
            # batches of 1-32 texts, at most the token budget's worth at this width (as the planner cuts them)
            most = min(32, max(1, model.default_token_budget // width))
            rows = sorted({row_bucket(n) for n in range(1, most + 1)})
            model.warmup(batch_sizes=rows, lengths=[width])
            visited += [[r, width] for r in rows]
        shapes = {"shapes": visited, "rss_before_mb": round(before, 1), "rss_after_mb": round(rss_mb(), 1)}
        print(f"every shape visited ({len(visited)}): RSS {before:.0f} -> {rss_mb():.0f} MB", file=sys.stderr)
    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(args.threads_encoding)]
    start = time.monotonic()
    for t in threads:
        t.start()
    samples = []
    deadline = start + args.minutes * 60
    while time.monotonic() < deadline:
        time.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))
        samples.append(
            {"seconds": round(time.monotonic() - start, 1), "rss_mb": round(rss_mb(), 1), "texts": sum(encoded)}
        )
        print(samples[-1], file=sys.stderr)
    stop.set()
    for t in threads:
        t.join()

    warmup_s = max(60.0, 0.1 * args.minutes * 60)
    after = [s for s in samples if s["seconds"] >= warmup_s] or samples
    base, end, peak = after[0]["rss_mb"], after[-1]["rss_mb"], max(s["rss_mb"] for s in after)
    summary = {
        "rss_after_warmup_mb": base,
        "rss_end_mb": end,
        "rss_peak_after_warmup_mb": peak,
        "growth_percent": 100 * (end - base) / base,
        "peak_growth_percent": 100 * (peak - base) / base,
        "texts": samples[-1]["texts"],
        "flat": 100 * (peak - base) / base < 5,
    }
    data = {
        "machine": machine_facts(),
        "model": args.model,
        "precision": model.precision,
        "backend": model.backend,
        "minutes": args.minutes,
        "encoding_threads": args.threads_encoding,
        "shape_warmup": shapes,
        "summary": summary,
        "samples": samples,
    }
    md = (
        f"# Soak, {data['machine']['date']}\n\n{args.minutes:g} minutes, {args.model} {model.precision} on CPU ({model.backend}), "
        f"{args.threads_encoding} threads sharing one model, {summary['texts']} texts.\n\n"
        f"RSS after warm-up {base:.1f} MB, at the end {end:.1f} MB, peak {peak:.1f} MB: growth "
        f"{summary['growth_percent']:+.2f}% (peak {summary['peak_growth_percent']:+.2f}%; limit 5%): "
        f"{'flat' if summary['flat'] else 'GROWING'}.\n"
    )
    json_path, md_path = write_results(f"soak-{dt.date.today().isoformat()}-{model.backend}", data, md)
    print(md)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0 if summary["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
