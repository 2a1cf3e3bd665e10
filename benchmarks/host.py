"""The host path alone, and how busy it keeps a device: measured without a GPU.

    python -m benchmarks host [--model minilm] [--texts 8192] [--cores 1,2] [--load 0.8] [--out DIR]

(a) Host scaling. For each core count c, a fresh process pinned to c cores embeds short STS sentences and
    texts of 128 tokens with a near-free engine (it returns zeros), so only tokenizing, padding and the
    batching around them are timed:
    - `bare`: the tokenizer library alone, `encode_batch_fast` on its own pool of c threads: the ceiling;
    - `workers`: `encode` with c host workers (each with its own tokenizer; the library's pool off);
    - `serial`: `encode` with the host work in the calling thread (host_workers=0, the library's pool on):
      the CPU default, and what the GPU path did before host workers.
(b) A stand-in device. On all cores, an engine that sleeps a fixed time per padded token (sleep releases
    the GIL, as a GPU call does), set to embed texts at `load` x the host capacity measured in (a)
    (`workers` on 128-token texts, all cores). Reported: the share of `encode`'s wall time the device is
    busy, and how long until its first batch starts next to the time to tokenize one batch on one thread.

Batches are GPU-sized (256 texts, 65,536 tokens): this is the path that feeds a GPU. Texts/s are medians of
interleaved rounds, every ratio within one run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BATCH, BUDGET = 256, 65536
ROUNDS = 5


class NearFreeEngine:
    """An engine that returns zeros: `encode` through it times the host path alone."""

    pooled = True
    pads_lone_text = False

    def __init__(self, dim: int, input_names: tuple[str, ...]) -> None:
        self.dim = dim
        self.input_names = input_names

    def place(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return feed

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return np.zeros((len(feed["input_ids"]), self.dim), dtype=np.float32)


class StandInDevice(NearFreeEngine):
    """A device that takes `seconds_per_token` per padded token and releases the GIL meanwhile (it sleeps).

    `busy` adds up the time it was asked to take, so sleep's own overshoot counts as idle, not busy.
    """

    def __init__(self, dim: int, input_names: tuple[str, ...], seconds_per_token: float) -> None:
        super().__init__(dim, input_names)
        self.seconds_per_token = seconds_per_token
        self.busy = 0.0
        self.first_start: float | None = None

    def run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        if self.first_start is None:
            self.first_start = time.perf_counter()
        duration = feed["input_ids"].size * self.seconds_per_token
        time.sleep(duration)
        self.busy += duration
        return super().run(feed)


def model_with(artifact: Path, engine: Any, workers: int) -> Any:
    """An EmbeddingModel of `artifact` (its tokenizer and plan) running on `engine` as a CUDA model would: the
    host path and batch plan of a GPU, whatever runs the batches."""
    from jina_onnx import EmbeddingModel
    from jina_onnx.manifest import Precision, load_manifest

    manifest = load_manifest(artifact)
    return EmbeddingModel(
        artifact, manifest, manifest.variants[Precision.FP32], "cuda", 1, host_workers=workers, engine=engine
    )


def workloads(artifact: Path, count: int) -> dict[str, list[str]]:
    """`count` short STS sentences and `count` texts of exactly 128 tokens (1,024 distinct ones, repeated:
    the tokenizer keeps no cache, so a repeat costs what a new text does)."""
    from jina_onnx.manifest import load_manifest
    from jina_onnx.tokenization import TextTokenizer

    from .workloads import fixed_length_texts, short_texts

    manifest = load_manifest(artifact)
    tokenizer = TextTokenizer(artifact / manifest.tokenizer.file, manifest.max_length, manifest.tokenizer.pad_id)
    short, fixed = short_texts(0), fixed_length_texts(tokenizer, min(count, 1024))
    return {
        "short": (short * (count // len(short) + 1))[:count],
        "fixed128": (fixed * (count // len(fixed) + 1))[:count],
    }


def _pin(cores: int) -> None:
    """Run this process (and the tokenizer library's pool, sized on first use) on `cores` CPUs."""
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, allowed[:cores])
    os.environ["RAYON_NUM_THREADS"] = str(cores)


def _timed(runners: dict[str, tuple[str, Callable[[], object]]], count: int) -> dict[str, float]:
    """Median texts/s of each runner over interleaved rounds; each sets TOKENIZERS_PARALLELISM first."""
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for round_ in range(ROUNDS + 1):
        for name, (parallelism, run) in runners.items():
            os.environ["TOKENIZERS_PARALLELISM"] = parallelism
            started = time.perf_counter()
            run()
            if round_:  # the first round warms up
                samples[name].append(count / (time.perf_counter() - started))
    return {name: statistics.median(s) for name, s in samples.items()}


def scaling_child(artifact: Path, texts: dict[str, list[str]], cores: int) -> dict[str, Any]:
    """(a) in this process, pinned to `cores` CPUs."""
    _pin(cores)
    import tokenizers

    from jina_onnx.manifest import load_manifest

    manifest = load_manifest(artifact)
    bare = tokenizers.Tokenizer.from_file(str(artifact / manifest.tokenizer.file))
    bare.enable_truncation(manifest.max_length)
    bare.no_padding()
    workers = model_with(artifact, NearFreeEngine(manifest.dim, manifest.inputs), cores)
    serial = model_with(artifact, NearFreeEngine(manifest.dim, manifest.inputs), 0)
    out: dict[str, Any] = {}
    for workload, items in texts.items():
        out[workload] = _timed(
            {
                "bare": ("true", lambda items=items: bare.encode_batch_fast(items)),
                "workers": ("false", lambda items=items: workers.encode(items, batch_size=BATCH, token_budget=BUDGET)),
                "serial": ("true", lambda items=items: serial.encode(items, batch_size=BATCH, token_budget=BUDGET)),
            },
            len(items),
        )
    return out


def device_child(artifact: Path, texts: list[str], cores: int, capacity: float, load: float) -> dict[str, Any]:
    """(b) in this process, on `cores` CPUs: the stand-in device at `load` x `capacity` texts/s."""
    _pin(cores)
    from jina_onnx.manifest import load_manifest

    manifest = load_manifest(artifact)
    # The padded tokens of the host workers' plan: the work the device gets from them.
    probe = model_with(artifact, NearFreeEngine(manifest.dim, manifest.inputs), cores)
    padded = sum(b.tokens for b in probe.prepare_batches(texts, batch_size=BATCH, token_budget=BUDGET))
    seconds_per_token = len(texts) / padded / (load * capacity)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    first_batch = texts[:BATCH]
    tokenize_one = statistics.median(
        _seconds(lambda: probe.tokenizer.tokenize(first_batch, private=True)) for _ in range(7)
    )
    out: dict[str, Any] = {
        "load": load,
        "capacity": capacity,
        "seconds_per_token": seconds_per_token,
        "tokenize_one_batch_s": tokenize_one,
        "device_only_s": padded * seconds_per_token,
    }
    for name, workers in (("workers", cores), ("serial", 0)):
        device = StandInDevice(manifest.dim, manifest.inputs, seconds_per_token)
        model = model_with(artifact, device, workers)
        os.environ["TOKENIZERS_PARALLELISM"] = "false" if workers else "true"
        model.encode(texts[: 2 * BATCH], batch_size=BATCH, token_budget=BUDGET)  # warm, as a service would be
        runs = []
        for _ in range(3):
            device.busy, device.first_start = 0.0, None
            started = time.perf_counter()
            model.encode(texts, batch_size=BATCH, token_budget=BUDGET)
            wall = time.perf_counter() - started
            runs.append(
                {"busy": device.busy / wall, "wall_s": wall, "first_batch_s": (device.first_start or started) - started}
            )
        runs.sort(key=lambda r: r["busy"])
        out[name] = runs[len(runs) // 2] | {"busy_all": [r["busy"] for r in runs]}
    return out


def _seconds(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _child(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh process (its own CPU affinity and tokenizer pool)."""
    cmd = [sys.executable, "-m", "benchmarks.host", "--child", kind]
    done = subprocess.run(
        cmd,
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if done.returncode:
        raise RuntimeError(f"benchmarks.host child {kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def measure(artifact: Path, count: int, cores: list[int], load: float, log: Callable[[str], None]) -> dict[str, Any]:
    texts = workloads(artifact, count)
    results: dict[str, Any] = {
        "texts": count,
        "batch_size": BATCH,
        "token_budget": BUDGET,
        "rounds": ROUNDS,
        "scaling": {},
    }
    for c in cores:
        log(f"host path on {c} core(s): bare tokenizer, {c} workers, serial")
        results["scaling"][str(c)] = _child("scaling", {"artifact": str(artifact), "texts": texts, "cores": c})
    top = results["scaling"][str(max(cores))]
    capacity = top["fixed128"]["workers"]
    log(f"stand-in device at {load:.0%} of {capacity:,.0f} texts/s on {max(cores)} cores")
    results["device"] = _child(
        "device",
        {
            "artifact": str(artifact),
            "texts": texts["fixed128"],
            "cores": max(cores),
            "capacity": capacity,
            "load": load,
        },
    )
    return results


def render(data: dict[str, Any]) -> str:
    lines = [
        f"# Host path: {data['machine']['cpu']}, {data['machine']['logical_cpus']} CPUs, {data['date']}",
        "",
        f"Command: `{data['command']}`. Model {data['model']}'s tokenizer, {data['texts']:,} texts per "
        f"workload, batches of {data['batch_size']} (GPU-sized), near-free engine; texts/s, medians of "
        f"{data['rounds']} interleaved rounds, each core count in its own pinned process.",
        "",
        "| cores | workload | bare tokenizer | encode, host workers | encode, serial | workers / bare "
        "| serial / bare |",
        "|---|---|---|---|---|---|---|",
    ]
    for cores, by_workload in data["scaling"].items():
        for workload, r in by_workload.items():
            lines.append(
                f"| {cores} | {workload} | {r['bare']:,.0f} | {r['workers']:,.0f} | {r['serial']:,.0f} | "
                f"{r['workers'] / r['bare']:.2f} | {r['serial'] / r['bare']:.2f} |"
            )
    counts = sorted(data["scaling"], key=int)
    if len(counts) > 1:
        lines += ["", f"Scaling from 1 to {counts[-1]} cores:", ""]
        for workload in data["scaling"][counts[0]]:
            one, top = data["scaling"][counts[0]][workload], data["scaling"][counts[-1]][workload]
            lines.append(
                f"- {workload}: host workers {top['workers'] / one['workers']:.2f}x, serial "
                f"{top['serial'] / one['serial']:.2f}x, bare tokenizer {top['bare'] / one['bare']:.2f}x"
            )
    d = data["device"]
    lines += [
        "",
        f"Stand-in device at {d['load']:.0%} of the host capacity ({d['capacity']:,.0f} texts/s of 128 "
        f"tokens on {counts[-1]} cores; the device alone would take {d['device_only_s']:.2f} s); one batch "
        f"takes {d['tokenize_one_batch_s'] * 1e3:.1f} ms to tokenize on one thread:",
        "",
        "| host path | device busy | first batch starts after | wall s |",
        "|---|---|---|---|",
    ]
    for name in ("workers", "serial"):
        r = d[name]
        lines.append(
            f"| {name} | {r['busy']:.3f} | {r['first_batch_s'] * 1e3:.1f} ms "
            f"({r['first_batch_s'] / d['tokenize_one_batch_s']:.2f}x one batch) | {r['wall_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main_child(kind: str) -> int:
    spec = json.loads(sys.stdin.read())
    artifact = Path(spec["artifact"])
    if kind == "scaling":
        result = scaling_child(artifact, spec["texts"], spec["cores"])
    else:
        result = device_child(artifact, spec["texts"], spec["cores"], spec["capacity"], spec["load"])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main_child(sys.argv[sys.argv.index("--child") + 1]))
