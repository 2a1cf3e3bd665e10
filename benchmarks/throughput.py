"""Runtime throughput on a mixed-length corpus, fastembed side by side, latency and cold start.

Run: python -m benchmarks.throughput [--rounds 1] [--texts 1100]
Writes benchmarks/results/throughput-<date>.json and .md. Every ratio compares runners of the
same run, alternated round by round, on the same corpus:
- naive batching (caller's order, batch 32, padded to the longest) vs jina-onnx's length-sorted,
  token-budgeted batching, for s fp32 and s int8;
- jina-onnx vs fastembed on the same ONNX file (s fp32) and corpus, outputs compared by cosine;
- single-sentence latency p50/p95 for t and s;
- cold start: import time, build_model + first encode of t, peak RSS of embedding 1,000 STS sentences.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import subprocess
import sys
import time
import warnings

import numpy as np

from .common import interleaved, machine_facts, physical_cores, prepared_artifact, write_results
from .runners import fastembed_model
from .sts import load_sts

BATCH = 32


def mixed_corpus(seed: int = 0) -> list[str]:
    """The 3,000 STS-dev sentences plus 300 passages of 300-500 tokens built by joining them, shuffled."""
    first, second, _ = load_sts()
    sentences = first + second
    rng = random.Random(seed)
    passages = []
    for _ in range(300):
        target = rng.randint(300, 500)
        words: list[str] = []
        while len(words) * 1.3 < target:  # about 1.3 tokens per word for both tokenizers
            words += rng.choice(sentences).split()
        passages.append(" ".join(words))
    corpus = sentences + passages
    rng.shuffle(corpus)
    return corpus


def naive_runner(model, corpus: list[str]):  # type: ignore[no-untyped-def]
    """Fixed-size batches in the caller's order, each padded to its longest text: the usual loop."""
    def run() -> np.ndarray:
        out = []
        for start in range(0, len(corpus), BATCH):
            ids = model.tokenizer.tokenize(corpus[start : start + BATCH]).ids
            input_ids, mask = model.tokenizer.pad(ids)
            feed = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
            names = [i.name for i in model.session.get_inputs()]
            out.append(model.session.run(["sentence_embedding"], {n: feed[n] for n in names})[0])
        return np.concatenate(out)
    return run


def mixed_corpus_section(rounds: int, threads: int, texts: int) -> dict[str, object]:
    from jina_onnx import build_model

    corpus = mixed_corpus()
    # The corpus is shuffled, so a prefix keeps its mix of sentences and passages.
    corpus = corpus[:texts] if texts else corpus
    artifact = prepared_artifact("s")
    results: dict[str, object] = {"texts": len(corpus)}
    for precision in ("fp32", "int8"):
        model = build_model(artifact, device="cpu", precision=precision, threads=threads)
        results["tokens"] = int(model.tokenizer.tokenize(corpus).lengths.sum())
        timings = interleaved({"naive": naive_runner(model, corpus),
                               "jina-onnx": lambda m=model: m.encode(corpus, batch_size=BATCH)}, rounds, warmup=0)
        results[f"s {precision}"] = {
            "seconds": timings,
            "texts_per_second": {k: len(corpus) / v["median"] for k, v in timings.items()},
            "speedup": timings["naive"]["median"] / timings["jina-onnx"]["median"],
        }
    ours = build_model(artifact, device="cpu", precision="fp32", threads=threads)
    fast = fastembed_model(artifact, threads)
    timings = interleaved({"fastembed": lambda: list(fast.embed(corpus, batch_size=BATCH)),
                           "jina-onnx": lambda: ours.encode(corpus, batch_size=BATCH)}, rounds, warmup=0)
    a = ours.encode(corpus, batch_size=BATCH)
    b = np.stack(list(fast.embed(corpus, batch_size=BATCH)))
    cosines = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    results["vs fastembed (s fp32)"] = {
        "seconds": timings,
        "speedup": timings["fastembed"]["median"] / timings["jina-onnx"]["median"],
        "min_cosine": float(cosines.min()),
    }
    return results


def latency_section(threads: int, calls: int = 200) -> dict[str, object]:
    from jina_onnx import build_model

    first, _, _ = load_sts()
    results = {}
    for size in ("t", "s"):
        for precision in ("int8", "fp32"):
            model = build_model(prepared_artifact(size), device="cpu", precision=precision, threads=threads)
            model.encode(first[:8])
            samples = []
            for sentence in first[:calls]:
                start = time.perf_counter()
                model.encode([sentence])
                samples.append((time.perf_counter() - start) * 1000)
            results[f"{size} {precision}"] = {"p50_ms": float(np.percentile(samples, 50)),
                                              "p95_ms": float(np.percentile(samples, 95))}
    return results


COLD = """
import json, resource, sys, time, warnings
t0 = time.perf_counter()
import jina_onnx
t1 = time.perf_counter()
rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
model = jina_onnx.build_model(sys.argv[1], device="cpu")
model.encode(["how is the weather today"])
t2 = time.perf_counter()
sentences = [l.split("\\t")[5] for l in open(sys.argv[2], encoding="utf-8").read().splitlines()][:1000]
model.encode(sentences)
print(json.dumps({"import_s": t1 - t0, "import_peak_rss_mb": rss_import, "build_and_first_encode_s": t2 - t1,
                  "precision": model.precision,
                  "peak_rss_1000_sts_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def cold_start_section(repeats: int = 5) -> dict[str, object]:
    from .sts import STS_DEV

    artifact = prepared_artifact("t")
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", COLD, str(artifact), str(STS_DEV)], capture_output=True,
                             text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    keys = ("import_s", "import_peak_rss_mb", "build_and_first_encode_s", "peak_rss_1000_sts_mb")
    return {"precision": runs[0]["precision"], **{k: float(np.median([r[k] for r in runs])) for k in keys},
            "repeats": repeats}


def markdown(data: dict[str, object]) -> str:
    facts, mixed, latency, cold = data["machine"], data["mixed_corpus"], data["latency"], data["cold_start"]
    lines = [f"# Runtime throughput, {facts['date']}", "",
             f"CPU: {facts['cpu']} ({facts['physical_cores']} physical cores); onnxruntime {facts['onnxruntime']}; "
             f"{data['threads']} threads; medians of the rounds.", "",
             f"Mixed corpus: {mixed['texts']} texts ({mixed['tokens']} tokens with s's tokenizer), a prefix of the "
             "shuffled mix of the 3,000 STS-dev sentences and 300 passages of 300-500 tokens.", "",
             "| runner | naive texts/s | jina-onnx texts/s | speedup (target >= 2x) |", "|---|---|---|---|"]
    for key in ("s fp32", "s int8"):
        r = mixed[key]
        lines.append(f"| {key} | {r['texts_per_second']['naive']:.1f} | {r['texts_per_second']['jina-onnx']:.1f} | "
                     f"{r['speedup']:.2f}x |")
    fe = mixed["vs fastembed (s fp32)"]
    lines += ["", f"jina-onnx vs fastembed 0.9 on the same model.onnx (s fp32) and corpus: **{fe['speedup']:.2f}x** "
              f"(target >= 1.3x), min cosine between their outputs {fe['min_cosine']:.6f}.", "",
              "| single sentence | p50 ms | p95 ms |", "|---|---|---|"]
    lines += [f"| {k} | {v['p50_ms']:.2f} | {v['p95_ms']:.2f} |" for k, v in latency.items()]
    lines += ["", f"Cold start (t, {cold['precision']}, median of {cold['repeats']} fresh processes): "
              f"`import jina_onnx` {cold['import_s']:.3f} s (peak RSS {cold['import_peak_rss_mb']:.0f} MB); "
              f"build_model + first encode {cold['build_and_first_encode_s']:.3f} s; peak RSS after embedding "
              f"1,000 STS sentences {cold['peak_rss_1000_sts_mb']:.0f} MB."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1,
                        help="repetitions of each corpus pass (naive s fp32 alone takes minutes per pass)")
    parser.add_argument("--texts", type=int, default=1100,
                        help="use this prefix of the shuffled 3,300-text corpus (0: all of it)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # the corpus has no over-long text; fastembed's notices are noise here
    threads = physical_cores()
    data = {"machine": machine_facts(), "threads": threads}
    print("benchmark: cold start ...", file=sys.stderr)
    data["cold_start"] = cold_start_section()
    print("benchmark: mixed corpus ...", file=sys.stderr)
    data["mixed_corpus"] = mixed_corpus_section(args.rounds, threads, args.texts)
    print("benchmark: latency ...", file=sys.stderr)
    data["latency"] = latency_section(threads)
    json_path, md_path = write_results(f"throughput-{dt.date.today().isoformat()}", data, markdown(data))
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
