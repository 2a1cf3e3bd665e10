"""The side-by-side benchmark: jina-onnx against PyTorch, sentence-transformers' ONNX backend and fastembed.

One machine, the same texts for every runner, each runner in its own process (benchmarks/isolated.py). For each model it measures throughput on
short text (STS-dev sentences), long text (400-511-token passages) and fixed 128-token inputs at batch
sizes 1, 8, 32 and 128; batch-1 latency percentiles; cold start and peak RSS (each in a fresh process);
and quality as cosine to the torch fp32 reference. MiniLM (real weights) adds STS-dev Spearman per runner.
Runners alternate call by call (warm-up first, then rounds); medians are reported with min and max, and
every ratio is between numbers of this same run.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from .isolated import RemoteRunner
from .runners import RunnerSpec, Unsupported, artifact_dir
from .sts import load_sts, sts_spearman
from .workloads import fixed_length_texts, long_passages, short_texts

REFERENCE = "torch fp32"
GPU_BATCH = 256
SETTLE_S = 0.2
RSS_SHORT, RSS_LONG = 256, 8  # texts the cold-start process embeds before its peak RSS is read
DEFAULT_PRECISIONS = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16")}
BASELINES = {
    "cpu": (
        ("torch", "fp32"),
        ("st-onnx", "fp32"),
        ("st-onnx", "int8"),
        ("st-openvino", "default"),
        ("fastembed", "fp32"),
    ),
    "cuda": (("torch", "fp32"), ("torch", "fp16"), ("st-onnx", "fp32"), ("fastembed", "fp32")),
}


@dataclass(frozen=True)
class Settings:
    """How much work each measurement does. QUICK fits t and s in under 5 minutes on 2 CPU cores."""

    short_texts: int
    long_texts: int
    fixed_texts: dict[int, int] = field(hash=False)  # batch size -> number of 128-token texts
    latency_calls: int
    rounds: int
    cold_repeats: int
    minilm_pairs: int  # STS-dev pairs for the MiniLM quality check (0: all 1,500)
    gpu_fixed_texts: int = 2048  # 128-token texts at batch 256, on CUDA only
    minilm_runtimes: tuple[str, ...] = ()  # the runtimes of the MiniLM quality check (empty: every one)


QUICK = Settings(
    short_texts=256,
    long_texts=8,
    fixed_texts={1: 8, 8: 16, 32: 32, 128: 128},
    latency_calls=30,
    rounds=2,
    cold_repeats=1,
    minilm_pairs=500,
    gpu_fixed_texts=512,
)
SMOKE = Settings(
    short_texts=16,
    long_texts=2,
    fixed_texts={1: 2, 8: 8, 32: 32},  # batch 128 is the same loop at 4x batch 32's work (15 s of a test run)
    latency_calls=6,
    rounds=1,
    cold_repeats=1,
    minilm_pairs=50,
    gpu_fixed_texts=256,
    # The MiniLM section runs the same loop as each model's (every runner is exercised on t); the reference
    # and jina-onnx are enough to check it, and the other runners' exports of MiniLM cost 40 s of a test.
    minilm_runtimes=("torch", "jina-onnx"),
)  # for the test suite: every path, minimal work
FULL = Settings(
    short_texts=512,
    long_texts=24,
    fixed_texts={1: 24, 8: 48, 32: 96, 128: 128},
    latency_calls=100,
    rounds=3,
    cold_repeats=3,
    minilm_pairs=0,
)  # t, s, b: about 30 minutes on 2 CPU cores


def bf16_available() -> bool:
    """Whether jina-onnx bf16 (OpenVINO) can run here: the default CPU run adds it then."""
    from jina_onnx.engines import openvino as openvino_backend

    return openvino_backend.installed() and openvino_backend.cpu_has_bf16()


def default_precisions(device: str) -> tuple[str, ...]:
    return DEFAULT_PRECISIONS[device] + (("bf16",) if device == "cpu" and bf16_available() else ())


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def runner_specs(
    model: str, device: str, precisions: tuple[str, ...], runtimes: tuple[str, ...], threads: int
) -> list[RunnerSpec]:
    specs = [
        RunnerSpec(runtime, precision, model, device, threads)
        for runtime, precision in BASELINES[device]
        if runtime in runtimes
    ]
    if "jina-onnx" in runtimes:
        specs += [RunnerSpec("jina-onnx", precision, model, device, threads) for precision in precisions]
    return specs


def _error(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def start_runners(specs: list[RunnerSpec]) -> tuple[dict[str, RunnerSpec], dict[str, Callable], dict[str, dict]]:
    """Start every runner in its own process; one that cannot run is recorded, not fatal."""
    ready: dict[str, RunnerSpec] = {}
    encoders: dict[str, Callable] = {}
    status: dict[str, dict] = {}
    for spec in specs:
        try:
            RemoteRunner.prepare(spec)
            encoders[spec.label] = RemoteRunner(spec)
            ready[spec.label] = spec
            status[spec.label] = {"status": "ok", "spec": asdict(spec)}
        except Unsupported as error:
            status[spec.label] = {"status": "unsupported", "reason": str(error), "spec": asdict(spec)}
            where = (
                f" (cached in {error.cached} for these package versions; --retry-unsupported tries again)"
                if error.cached
                else ""
            )
            log(f"  {spec.label}: unsupported: {error}{where}")
        except Exception as error:  # a baseline that breaks is a result to show, not a reason to stop the suite
            status[spec.label] = {"status": "failed", "reason": _error(error), "spec": asdict(spec)}
            log(f"  {spec.label}: failed to load: {_error(error)}")
    return ready, encoders, status


def close(encoders: dict[str, Callable]) -> None:
    for encode in encoders.values():
        encode.close()
    encoders.clear()


def settle() -> None:
    """Let the previous runner's thread pools stop spinning (ONNX Runtime and OpenMP busy-wait after a call),
    so they don't steal the cores from the next runner being timed."""
    time.sleep(SETTLE_S)


def timed_rounds(
    encoders: dict[str, Callable],
    texts: list[str],
    batch_size: int,
    token_budget: int | None,
    rounds: int,
    status: dict[str, dict],
) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """Warm up each runner on two batches, then time `rounds` full passes alternating runner by runner."""
    outputs: dict[str, np.ndarray] = {}
    samples: dict[str, list[float]] = {}
    for label, encode in list(encoders.items()):
        try:
            encode(texts[: 2 * batch_size], batch_size, token_budget)
            samples[label] = []
        except Exception as error:  # record and drop the runner from the rest of the run
            status[label].update(status="failed", reason=_error(error))
            log(f"  {label}: failed: {_error(error)}")
            del encoders[label]
    for _ in range(rounds):
        for label, encode in list(encoders.items()):
            settle()
            try:
                outputs[label] = encode(texts, batch_size, token_budget)
            except Exception as error:  # a runner that dies mid-run (out of memory) is reported; the rest go on
                drop(label, error, encoders, status)
                samples.pop(label, None)
                outputs.pop(label, None)
                continue
            samples[label].append(encode.seconds)  # timed in the runner's process, without the pipe
    return samples, outputs


def drop(label: str, error: BaseException, encoders: dict[str, Callable], status: dict[str, dict]) -> None:
    """Record a runner that failed during the run as failed, stop its process and leave it out from here on."""
    status[label].update(status="failed", reason=_error(error))
    log(f"  {label}: failed: {_error(error)}")
    encoders.pop(label).close()


def raw_rounds(
    encoders: dict[str, Callable], texts: list[str], batch_size: int, token_budget: int | None, rounds: int
) -> dict[str, list[float]]:
    """Time the runners that expose a raw-session ceiling (jina-onnx) on pre-built inputs of the same batches,
    alternating like `timed_rounds`, right after it."""
    prepared, samples = {}, {}
    for label, encode in encoders.items():
        if hasattr(encode, "raw"):
            try:
                prepared[label] = encode.raw(texts, batch_size, token_budget)
                prepared[label]()  # warm-up
                samples[label] = []
            except Exception as error:  # no ceiling for this runner; timed_rounds reports a dead one
                prepared.pop(label, None)
                log(f"  {label}: raw session failed: {_error(error)}")
    for _ in range(rounds):
        for label, run in list(prepared.items()):
            settle()
            try:
                run()
            except Exception as error:
                log(f"  {label}: raw session failed: {_error(error)}")
                del prepared[label], samples[label]
                continue
            samples[label].append(run.seconds)
    return samples


def summarize(seconds: list[float], texts: int, tokens: int) -> dict[str, float]:
    median = statistics.median(seconds)
    return {
        "texts": texts,
        "tokens": tokens,
        "seconds_median": median,
        "seconds_min": min(seconds),
        "seconds_max": max(seconds),
        "texts_per_s": texts / median,
        "tokens_per_s": tokens / median,
        "texts_per_s_min": texts / max(seconds),
        "texts_per_s_max": texts / min(seconds),
    }


def latency(
    encoders: dict[str, Callable], sentences: list[str], status: dict[str, dict], blocks: int = 3
) -> dict[str, dict[str, float]]:
    """Batch-1 latency: each runner takes its share of the sentences in turn, in `blocks` alternating blocks,
    after a pause and five untimed calls, so drift and the other runners' idle threads hit all alike."""
    samples: dict[str, list[float]] = {label: [] for label in encoders}
    size = -(-len(sentences) // blocks)
    for block in range(blocks):
        chunk = sentences[block * size : (block + 1) * size]
        for label, encode in list(encoders.items()):
            settle()
            try:
                for sentence in sentences[:5]:
                    encode([sentence], 1, None)
                for sentence in chunk:
                    encode([sentence], 1, None)
                    samples[label].append(encode.seconds * 1000)
            except Exception as error:
                drop(label, error, encoders, status)
                del samples[label]
    return {
        label: {f"p{q}_ms": float(np.percentile(s, q)) for q in (50, 95, 99)} | {"calls": len(s)}
        for label, s in samples.items()
    }


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def cold_start(spec: RunnerSpec, workloads: list[list[str]], repeats: int) -> dict[str, float]:
    """Median over fresh processes of import, load and first encode; peak RSS of the first process, which also
    embeds the workloads (the later ones only time the start)."""
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        for repeat in range(repeats):
            path = f"{tmp}/texts-{repeat}.json"
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(workloads if repeat == 0 else [], handle)
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.coldstart", spec.to_json(), path], capture_output=True, text=True
            )
            if done.returncode != 0:
                raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output")
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    times = {key: float(statistics.median(run[key] for run in runs)) for key in runs[0] if key.endswith("_s")}
    return times | {"peak_rss_mb": runs[0]["peak_rss_mb"], "repeats": repeats}


def tokenizer_for(model: str):  # type: ignore[no-untyped-def]
    """The artifact's Rust tokenizer: the same one sentence-transformers and fastembed tokenize with here."""
    from jina_onnx.manifest import load_manifest
    from jina_onnx.tokenization import TextTokenizer

    directory = artifact_dir(model)
    manifest = load_manifest(directory)
    return TextTokenizer(directory / "tokenizer.json", manifest.max_length, manifest.tokenizer.pad_id)


def benchmark_model(
    model: str, device: str, precisions: tuple[str, ...], runtimes: tuple[str, ...], threads: int, settings: Settings
) -> dict[str, object]:
    log(f"model {model}: preparing runners")
    specs = runner_specs(model, device, precisions, runtimes, threads)
    ready, encoders, status = start_runners(specs)
    tokenizer = tokenizer_for(model)
    short = short_texts(settings.short_texts)
    # Under the model's maximum (MiniLM's is 256), so no runner truncates and all embed the same tokens.
    high = min(511, tokenizer.max_length - 1)
    long = long_passages(tokenizer, settings.long_texts, low=min(400, high * 3 // 4), high=high)
    sections: dict[str, tuple[list[str], int, int | None]] = {"short": (short, 32, None), "long": (long, 32, None)}
    for batch, count in settings.fixed_texts.items():
        sections[f"fixed128_b{batch}"] = (fixed_length_texts(tokenizer, count), batch, batch * 128)
    if device == "cuda":  # GPU-sized batches next to the CPU ones
        sections["short_b256"] = (short_texts(0), GPU_BATCH, None)
        sections[f"fixed128_b{GPU_BATCH}"] = (
            fixed_length_texts(tokenizer, settings.gpu_fixed_texts),
            GPU_BATCH,
            GPU_BATCH * 128,
        )
    throughput: dict[str, dict[str, dict[str, float]]] = {}
    outputs: dict[str, dict[str, np.ndarray]] = {}
    for name, (texts, batch, budget) in sections.items():
        log(
            f"model {model}: {name} ({len(texts)} texts, batch {batch}, {settings.rounds} rounds x "
            f"{len(encoders)} runners)"
        )
        tokens = int(tokenizer.tokenize(texts).lengths.sum())
        samples, outputs[name] = timed_rounds(encoders, texts, batch, budget, settings.rounds, status)
        throughput[name] = {label: summarize(s, len(texts), tokens) for label, s in samples.items()}
        for label, raw in raw_rounds(encoders, texts, batch, budget, settings.rounds).items():
            ceiling = len(texts) / statistics.median(raw)
            throughput[name][label] |= {
                "raw_texts_per_s": ceiling,
                "efficiency": throughput[name][label]["texts_per_s"] / ceiling,
            }
    log(f"model {model}: batch-1 latency ({settings.latency_calls} calls per runner)")
    latencies = latency(encoders, short_texts(0)[-settings.latency_calls :], status)
    quality = {}
    if all(REFERENCE in outputs[s] for s in ("short", "long")):
        for label in [label for label in encoders if all(label in outputs[s] for s in ("short", "long"))]:
            cos = np.concatenate([cosine_rows(outputs[s][label], outputs[s][REFERENCE]) for s in ("short", "long")])
            quality[label] = {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min())}
    close(encoders)  # end the runner processes before the cold-start children run
    cold = {}
    for label in [label for label, s in status.items() if s["status"] == "ok"]:
        log(f"model {model}: cold start of {label} ({settings.cold_repeats} fresh process(es))")
        try:
            cold[label] = cold_start(ready[label], [short[:RSS_SHORT], long[:RSS_LONG]], settings.cold_repeats)
        except Exception as error:
            cold[label] = {"error": _error(error)}
    ratios = {
        section: {label: r["texts_per_s"] / results[REFERENCE]["texts_per_s"] for label, r in results.items()}
        for section, results in throughput.items()
        if REFERENCE in results
    }
    return {
        "runners": status,
        "throughput": throughput,
        "speedup_vs_torch_fp32": ratios,
        "latency": latencies,
        "quality_vs_torch_fp32": quality,
        "cold_start": cold,
        "workloads": {
            name: {
                "texts": len(t),
                "batch_size": b,
                "tokens": throughput[name][next(iter(throughput[name]))]["tokens"] if throughput[name] else None,
            }
            for name, (t, b, _) in sections.items()
        },
    }


def minilm_quality(
    device: str, precisions: tuple[str, ...], runtimes: tuple[str, ...], threads: int, settings: Settings
) -> dict[str, object]:
    """STS-dev Spearman x100 of the real all-MiniLM-L6-v2 through every runner, with one timed pass each."""
    first, second, scores = load_sts()
    if settings.minilm_pairs:
        first, second, scores = (
            first[: settings.minilm_pairs],
            second[: settings.minilm_pairs],
            scores[: settings.minilm_pairs],
        )
    if settings.minilm_runtimes:
        runtimes = tuple(r for r in runtimes if r in settings.minilm_runtimes)
    specs = runner_specs("minilm", device, precisions, runtimes, threads)
    _, encoders, status = start_runners(specs)
    results: dict[str, object] = {}
    for label, encode in encoders.items():
        log(f"minilm: STS-dev through {label}")
        try:
            encode(first[:64], 32, None)
            a = encode(first, 32, None)
            seconds = encode.seconds
            b = encode(second, 32, None)
            seconds += encode.seconds
            results[label] = {"spearman": sts_spearman(a, b, scores), "texts_per_s": 2 * len(first) / seconds}
        except Exception as error:
            results[label] = {"error": _error(error)}
    for label, s in status.items():
        if s["status"] != "ok":
            results[label] = {"error": s["reason"], "status": s["status"]}
    close(encoders)
    return {"pairs": len(first), "runners": results}


def run(
    models: list[str],
    device: str,
    precisions: tuple[str, ...],
    runtimes: tuple[str, ...],
    threads: int,
    settings: Settings,
    checkpoint: Callable[[dict], None] | None = None,
) -> dict[str, object]:
    """The whole suite; `checkpoint` gets the results so far after each model (a long run keeps them)."""
    warnings.simplefilter("ignore")  # third-party deprecation notices would drown the progress lines
    data: dict[str, object] = {"models": {}}
    for model in models:
        data["models"][model] = benchmark_model(model, device, precisions, runtimes, threads, settings)
        if checkpoint:
            checkpoint(data)
    data["minilm"] = minilm_quality(device, precisions, runtimes, threads, settings)
    return data
