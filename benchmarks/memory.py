"""Memory side by side: jina-onnx, fastembed and sentence-transformers' ONNX backend on the same graph file.

    python -m benchmarks memory [--models t,minilm] [--texts 1000] [--repeats 3]

Each row is one runner in a fresh Python process (a child: python -m benchmarks.memory JOB_JSON), which
reports its resident memory (VmRSS) after importing the runner's library, after loading the model and after
embedding the texts (STS-dev sentences, batch 32), its peak (VmHWM), and the import, load and first-encode
times. jina-onnx runs on ONNX Runtime (as in the suite) in three ways: `precision="auto"` on a first load
(an empty JINA_ONNX_HOME, so it measures its candidates and caches their speeds in runtime-checks.json), the
same on a second process that finds that cache, and named precisions, which never measure. fastembed and
sentence-transformers run the artifact's onnx/model.onnx, the file jina-onnx fp32 runs.
Writes benchmarks/results/memory-<date>.json and .md.
"""

from __future__ import annotations

import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BATCH_SIZE = 32
FIRST_TEXT = "how is the weather today"


@dataclass(frozen=True)
class Row:
    label: str
    runtime: str  # jina-onnx, fastembed or st-onnx
    precision: str  # jina-onnx: auto or a variant; the peers: fp32 (the artifact's model.onnx)
    cache: str  # JINA_ONNX_HOME: "fresh" (a new empty one) or "cached" (the previous row's, left as it was)


ROWS = (
    Row("jina-onnx auto, first load", "jina-onnx", "auto", "fresh"),
    Row("jina-onnx auto, cached", "jina-onnx", "auto", "cached"),
    Row("jina-onnx fp32", "jina-onnx", "fp32", "fresh"),
    Row("jina-onnx int8", "jina-onnx", "int8", "fresh"),
    Row("fastembed fp32", "fastembed", "fp32", "fresh"),
    Row("ST ONNX fp32", "st-onnx", "fp32", "fresh"),
)
LIBRARY = {"jina-onnx": "jina_onnx", "fastembed": "fastembed", "st-onnx": "sentence_transformers"}
METRICS = (
    "import_s",
    "load_s",
    "first_encode_s",
    "encode_s",
    "rss_start_mb",
    "rss_import_mb",
    "rss_load_mb",
    "peak_load_mb",
    "rss_encoded_mb",
    "peak_rss_mb",
)


def proc_status_mb(field: str) -> float:
    """VmRSS (resident now) or VmHWM (peak since exec) of this process, in MB (MiB)."""
    for line in open("/proc/self/status", encoding="ascii"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}: this benchmark reads Linux's /proc")


def load(job: dict[str, Any]) -> tuple[Any, dict[str, str]]:
    """(encode(texts) -> vectors, what runs) for the job's runner, on the job's file."""
    from . import runners

    directory, threads = Path(job["directory"]), job["threads"]
    if job["runtime"] == "jina-onnx":
        from jina_onnx import build_model

        model = build_model(directory, device="cpu", precision=job["precision"], threads=threads, backend="onnxruntime")
        runs = {"file": f"onnx/{model.onnx_path.name}", "precision": model.precision}
        return lambda texts: model.encode(texts, batch_size=BATCH_SIZE), runs
    runs = {"file": job["file"], "precision": job["precision"]}
    if job["runtime"] == "fastembed":
        embedder = runners.fastembed_on_file(directory, job["file"], job["dim"], threads)
        return lambda texts: list(embedder.embed(texts, batch_size=BATCH_SIZE)), runs
    if job["runtime"] == "st-onnx":
        model = runners.st_onnx_on_file(directory, job["file"], threads)
        return lambda texts: model.encode(texts, batch_size=BATCH_SIZE), runs
    raise ValueError(f"unknown runtime {job['runtime']!r}; expected one of {', '.join(LIBRARY)}")


def child(job: dict[str, Any]) -> dict[str, Any]:
    """Measure one runner in this (fresh) process; only the standard library and numpy are loaded before."""
    import warnings

    warnings.simplefilter("ignore")
    texts = json.loads(Path(job["texts"]).read_text(encoding="utf-8"))
    checks = Path(os.environ["JINA_ONNX_HOME"]) / "runtime-checks.json"
    cached_before = checks.is_file()
    found = {"rss_start_mb": proc_status_mb("VmRSS")}
    start = time.perf_counter()
    importlib.import_module(LIBRARY[job["runtime"]])
    imported = time.perf_counter()
    found["rss_import_mb"] = proc_status_mb("VmRSS")
    encode, runs = load(job)
    loaded = time.perf_counter()
    found |= {"rss_load_mb": proc_status_mb("VmRSS"), "peak_load_mb": proc_status_mb("VmHWM")}
    encode([FIRST_TEXT])
    first = time.perf_counter()
    encode(texts)
    encoded = time.perf_counter()
    return found | {
        "import_s": imported - start,
        "load_s": loaded - imported,
        "first_encode_s": first - loaded,
        "encode_s": encoded - first,
        "rss_encoded_mb": proc_status_mb("VmRSS"),
        "peak_rss_mb": proc_status_mb("VmHWM"),
        "speeds_cached_before": cached_before,
        "speeds_cached_after": checks.is_file(),
        "runs": runs,
    }


def run_child(job: dict[str, Any], home: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", json.dumps(job)],
        cwd=ROOT,
        env=os.environ | {"JINA_ONNX_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"error: {job['runtime']} {job['precision']} failed in its process:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_model(model: str, texts_file: Path, repeats: int, threads: int, work: Path, log: Any) -> dict:
    """Every row for one model, `repeats` fresh processes each: the medians, and every process's numbers."""
    from jina_onnx.manifest import Precision, load_manifest

    from .runners import artifact_dir

    directory = artifact_dir(model)
    manifest = load_manifest(directory)
    base = {"directory": str(directory), "dim": manifest.dim, "threads": threads, "texts": str(texts_file)}
    runs: dict[str, list[dict[str, Any]]] = {row.label: [] for row in ROWS}
    for repeat in range(repeats):
        home = work
        for index, row in enumerate(ROWS):
            if row.cache == "fresh":  # else the previous row's home, with what that process cached
                home = work / f"home-{model}-{repeat}-{index}"
                home.mkdir(parents=True)
            file = manifest.variants[Precision(row.precision)].file if row.precision != "auto" else ""
            job = base | {"runtime": row.runtime, "precision": row.precision, "file": file}
            runs[row.label].append(run_child(job, home))
            last = runs[row.label][-1]
            log(
                f"memory: {manifest.name} {row.label} ({repeat + 1}/{repeats}): peak {last['peak_rss_mb']:.0f} MB, "
                f"load {last['load_s']:.2f} s"
            )
    rows: dict[str, dict[str, Any]] = {}
    for label, processes in runs.items():
        rows[label] = {metric: statistics.median(p[metric] for p in processes) for metric in METRICS}
        rows[label] |= {"runs": processes[0]["runs"], "processes": processes}
    return {"name": manifest.name, "directory": str(directory), "rows": rows}


def measure(models: list[str], texts: int, repeats: int, threads: int, log: Any) -> dict[str, Any]:
    from .sts import load_sts

    first, second, _ = load_sts()
    sentences = (first + second)[:texts]
    with tempfile.TemporaryDirectory(prefix="jina-onnx-memory-") as scratch:
        texts_file = Path(scratch) / "texts.json"
        texts_file.write_text(json.dumps(sentences), encoding="utf-8")
        results = {m: measure_model(m, texts_file, repeats, threads, Path(scratch), log) for m in models}
    return {"texts": len(sentences), "repeats": repeats, "threads": threads, "batch_size": BATCH_SIZE} | {
        "models": results
    }


def render(data: dict[str, Any]) -> str:
    facts, texts = data["machine"], data["texts"]
    lines = [
        f"# Memory, {facts['date']}",
        "",
        f"Machine: {facts['cpu']}, {facts['physical_cores']} physical cores ({facts['logical_cpus']} logical), "
        f"{data['threads']} threads per runner. Command: `{data['command']}`. Versions: "
        + ", ".join(f"{k} {v}" for k, v in data["versions"].items())
        + ".",
        "",
        f"Each row: a fresh Python process, median of {data['repeats']}. RSS is VmRSS from /proc/self/status "
        f"after importing the runner's library, after loading the model, and after embedding {texts:,} STS-dev "
        f"sentences (batch {data['batch_size']}); peak is VmHWM at the end. A bare process (Python, numpy) "
        f"starts at {_bare(data):.0f} MB. Times: import, load, and the first one-sentence encode.",
        "",
        f"| model | runner | runs | import s | load s | first encode s | RSS after import MB | RSS after load MB "
        f"| RSS after {texts:,} texts MB | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in data["models"].values():
        for label, row in model["rows"].items():
            runs = f"{row['runs']['file']} ({row['runs']['precision']})"
            lines.append(
                f"| {model['name']} | {label} | {runs} | {row['import_s']:.2f} | {row['load_s']:.2f} | "
                f"{row['first_encode_s']:.3f} | {row['rss_import_mb']:,.0f} | {row['rss_load_mb']:,.0f} | "
                f"{row['rss_encoded_mb']:,.0f} | {row['peak_rss_mb']:,.0f} |"
            )
    return "\n".join(lines) + "\n"


def _bare(data: dict[str, Any]) -> float:
    return statistics.median(row["rss_start_mb"] for model in data["models"].values() for row in model["rows"].values())


if __name__ == "__main__":
    print(json.dumps(child(json.loads(sys.argv[1]))))
