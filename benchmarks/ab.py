"""Same-run A/B of `encode` throughput: this checkout against an earlier commit, pipelined or not.

Each contender is a worker process of its own (an older commit's `jina_onnx` is put first on its
PYTHONPATH from `git archive`), holding its model loaded; the parent asks them in turn to embed the same
texts, round after round, with a pause between, so drift and noise hit every contender alike. Only ratios
from one run are meaningful on a shared machine.

    python -m benchmarks.ab --base HEAD~3 --models t,s --precisions fp32,int8
    python -m benchmarks.ab --base HEAD~1 --models minilm,t --precisions bf16   # OpenVINO bf16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

from .common import RESULTS, machine_facts, prepared_artifact, prepared_minilm
from .suite import SETTLE_S, tokenizer_for
from .workloads import fixed_length_texts, short_texts

ROOT = Path(__file__).resolve().parent.parent


def worker(spec: dict) -> None:
    """Load one model, then answer 'NAME' lines with the seconds one encode of that workload took."""
    import jina_onnx

    options = {"pipeline": spec["pipeline"]} if spec["pipeline"] is not None else {}
    model = jina_onnx.build_model(spec["artifact"], device="cpu", precision=spec["precision"], **options)
    workloads = json.loads(Path(spec["texts"]).read_text())
    print(json.dumps({"ready": jina_onnx.__file__}), flush=True)
    for line in sys.stdin:
        texts = workloads[line.strip()]
        start = time.perf_counter()
        model.encode(texts, batch_size=32)
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


def checkout(rev: str, into: Path) -> Path:
    """The runtime package of `rev` as an importable `jina_onnx` under `into`."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "runtime"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / "runtime").rename(into / "jina_onnx")
    return into


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="HEAD", help="the commit to compare with (default HEAD)")
    parser.add_argument("--models", default="t,s", help="comma-separated: t, s, b, l, minilm")
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", help="results file (default benchmarks/results/ab-DATE.json)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    base_rev = subprocess.run(
        ["git", "rev-parse", "--short", args.base], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base_path = checkout(args.base, Path(tmp) / "base")
        for size in args.models.split(","):
            tokenizer = tokenizer_for(size)
            workloads = {"short": short_texts(0), "fixed128": fixed_length_texts(tokenizer, 256)}
            texts_file = Path(tmp) / f"texts-{size}.json"
            texts_file.write_text(json.dumps(workloads))
            for precision in args.precisions.split(","):
                contenders = {
                    f"{base_rev} (before)": (str(base_path), None),
                    "now, serial": ("", False),
                    "now, pipelined": ("", True),
                }
                artifact = prepared_minilm() if size == "minilm" else prepared_artifact(size)
                times = compare(contenders, artifact, precision, texts_file, workloads, args.rounds)
                results[f"{size} {precision}"] = times
                base = times[f"{base_rev} (before)"]
                for name, per in times.items():
                    print(
                        f"{size} {precision} {name:>16}: "
                        + ", ".join(
                            f"{w} {per[w]['texts_per_s']:,.0f}/s ({per[w]['texts_per_s'] / base[w]['texts_per_s']:.3f}x)"
                            for w in workloads
                        ),
                        flush=True,
                    )
    out = Path(args.out) if args.out else RESULTS / f"ab-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(
        json.dumps(
            {
                "machine": machine_facts(),
                "base": base_rev,
                "command": "python -m benchmarks.ab " + " ".join(argv if argv is not None else sys.argv[1:]),
                "rounds": args.rounds,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")
    return 0


def compare(
    contenders: dict[str, tuple[str, bool | None]],
    artifact: Path,
    precision: str,
    texts_file: Path,
    workloads: dict[str, list[str]],
    rounds: int,
) -> dict[str, dict[str, dict[str, float]]]:
    procs = {}
    for name, (pythonpath, pipeline) in contenders.items():
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (pythonpath, str(ROOT)) if p))
        spec = {"artifact": str(artifact), "precision": precision, "pipeline": pipeline, "texts": str(texts_file)}
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.ab", "--worker", json.dumps(spec)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        json.loads(procs[name].stdout.readline())  # type: ignore[union-attr]

    def ask(name: str, workload: str) -> float:
        proc = procs[name]
        proc.stdin.write(workload + "\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        return float(json.loads(proc.stdout.readline())["seconds"])  # type: ignore[union-attr]

    samples = {name: {w: [] for w in workloads} for name in contenders}
    try:
        for workload in workloads:
            for name in contenders:
                ask(name, workload)  # warm-up
            for _ in range(rounds):
                for name in contenders:
                    time.sleep(SETTLE_S)
                    samples[name][workload].append(ask(name, workload))
    finally:
        for proc in procs.values():
            proc.stdin.close()  # type: ignore[union-attr]
            proc.wait(timeout=30)
    return {
        name: {w: {"texts_per_s": len(workloads[w]) / statistics.median(s), "seconds": s} for w, s in per.items()}
        for name, per in samples.items()
    }


if __name__ == "__main__":
    raise SystemExit(main())
