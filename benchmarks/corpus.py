"""The corpus job's throughput next to in-process `encode_iter`, on the same corpus, in one run.

100,000 texts (STS-dev sentences with 2% longer passages, 10 shards: JSON Lines, Parquet, text) through:
in-process `encode_iter` (the ceiling: no reading, no writing), `jina-onnx embed` on this machine, and
`jina-onnx embed --ray` on a local Ray with 1 and 2 embedding actors. Ray's start-up (`ray.init`) is timed
apart; each job's time covers reading, embedding and writing. On a 2-core machine the two actors get one
ONNX Runtime thread each and the single actor (like the other runners) two.

    python -m benchmarks.corpus [--texts 100000] [--precision int8]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .common import RESULTS, machine_facts, physical_cores, prepared_artifact
from .workloads import sts_sentences


def corpus(count: int, seed: int = 0) -> list[str]:
    sentences = sts_sentences()
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(sentences) for _ in range(rng.randint(8, 24))) if i % 50 == 7 else rng.choice(sentences)
        for i in range(count)
    ]


def write_shards(texts: list[str], directory: Path, shards: int = 10) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True)
    size = -(-len(texts) // shards)
    for i in range(shards):
        part = texts[i * size : (i + 1) * size]
        kind = ("jsonl", "parquet", "txt")[i % 3]
        path = directory / f"part-{i:02d}.{kind}"
        if kind == "jsonl":
            path.write_text("".join(json.dumps({"text": t}) + "\n" for t in part), encoding="utf-8")
        elif kind == "txt":
            path.write_text("".join(t + "\n" for t in part), encoding="utf-8")
        else:
            pq.write_table(pa.table({"text": part}), path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=100_000)
    parser.add_argument("--precision", default="int8")
    args = parser.parse_args(argv)
    from jina_onnx import build_model
    from jina_onnx.corpus import embed_files
    from jina_onnx.ray import run_corpus_job

    artifact = prepared_artifact("t")
    cores = physical_cores()
    texts = corpus(args.texts)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in"
        write_shards(texts, source)
        model = build_model(artifact, device="cpu", precision=args.precision, threads=cores)
        start = time.perf_counter()
        rows = sum(len(chunk) for chunk in model.encode_iter(iter(texts)))
        results["in-process encode_iter"] = {"seconds": time.perf_counter() - start, "rows": rows, "threads": cores}
        print(f"encode_iter: {rows / results['in-process encode_iter']['seconds']:,.0f} texts/s", flush=True)

        start = time.perf_counter()
        manifest = embed_files(source, Path(tmp) / "local", model=model)
        results["jina-onnx embed (local)"] = {
            "seconds": time.perf_counter() - start,
            "rows": manifest["rows"],
            "threads": cores,
        }
        print(f"local job: {manifest['rows'] / results['jina-onnx embed (local)']['seconds']:,.0f} texts/s", flush=True)
        del model

        import ray

        start = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        ray_init = time.perf_counter() - start
        for workers in (1, 2):
            out = Path(tmp) / f"ray-{workers}"
            threads = max(1, cores // workers)
            start = time.perf_counter()
            manifest = run_corpus_job(
                str(source),
                str(out),
                address=None,
                model=str(artifact),
                precision=args.precision,
                workers=workers,
                cpus_per_worker=cores / (workers + 1),
                threads=threads,
            )
            label = f"jina-onnx embed --ray, {workers} actor{'s' if workers > 1 else ''}"
            results[label] = {"seconds": time.perf_counter() - start, "rows": manifest["rows"], "threads": threads}
            print(f"{label}: {manifest['rows'] / results[label]['seconds']:,.0f} texts/s", flush=True)
            shutil.rmtree(out)
        ray.shutdown()
    base = results["in-process encode_iter"]
    for entry in results.values():
        entry["texts_per_s"] = entry["rows"] / entry["seconds"]
        entry["vs_encode_iter"] = entry["texts_per_s"] / (base["rows"] / base["seconds"])
    data = {
        "machine": machine_facts(),
        "command": "python -m benchmarks.corpus " + " ".join(argv if argv is not None else sys.argv[1:]),
        "texts": args.texts,
        "precision": args.precision,
        "ray_init_s": ray_init,
        "results": results,
    }
    stem = f"corpus-{time.strftime('%Y-%m-%d')}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [
        f"Machine: {data['machine']['cpu']}, {cores} physical cores; t {args.precision}, {args.texts:,} texts "
        f"in 10 shards (JSON Lines, Parquet, text); `ray.init` took {ray_init:.1f} s (not counted).",
        "",
        "| runner | ONNX Runtime threads | seconds | texts/s | vs in-process encode_iter |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {label} | {e['threads']} | {e['seconds']:.1f} | {e['texts_per_s']:,.0f} | {e['vs_encode_iter']:.2f}x |"
        for label, e in results.items()
    ]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
