"""The checks the load plan needs answered on this machine, and their cache: bf16's gate and engine speeds.

- bf16 on OpenVINO must pass the same gate as fp16 (min cosine >= 0.999, mean >= 0.9995) against the
  PyTorch fp32 embeddings in the artifact's probe file. The export records that check in the manifest when
  OpenVINO is installed there; otherwise it runs at first load and the verdict is cached.
- Speeds: where the plan has several candidates (`precision="auto"`, `backend="auto"` with OpenVINO), each is
  timed once on this machine for the objective, briefly and one at a time (`measure`), and the texts/s are
  cached per file, CPU, thread count and engine versions.

The cache is `<JINA_ONNX_HOME>/runtime-checks.json` (default ~/.cache/jina-onnx); delete it to measure again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..atomic import write_atomically
from ..errors import ArtifactError
from ..gates import Gate
from ..loadplan import OPENVINO_GRAPHS
from ..machine import cpu_name
from ..manifest import Manifest, Parity, Precision, Variant, safe_member
from ..probe import probe_parity
from . import openvino

log = logging.getLogger("jina_onnx")

ENV = "JINA_ONNX_BACKEND"  # what backend="auto" means when set
BF16_GATE = Gate(mean_cosine=0.9995, min_cosine=0.999, batch_invariance=0.999)
CHECKS_FILE = "runtime-checks.json"
_logged: set[str] = set()


def openvino_variant(manifest: Manifest) -> Variant:
    """The graph OpenVINO runs: fp32-opt (ONNX Runtime's fusions, which OpenVINO reads and runs 2-9% faster
    in bf16 than the unfused graph, same fp32 outputs) where the artifact has it, else fp32.

    Example:
        >>> openvino_variant(manifest).file
        'onnx/model_cpu_fused.onnx'
    """
    for name in OPENVINO_GRAPHS:
        if Precision(name) in manifest.variants:
            return manifest.variants[Precision(name)]
    raise ArtifactError(f"{manifest.name} has no fp32 variant (onnx/model.onnx) for OpenVINO to run; re-export it")


def recorded_bf16(manifest: Manifest, variant: Variant, cache_dir: Path) -> str | None:
    """bf16's gate for `variant` on this CPU with this OpenVINO, as the export recorded it in the manifest or
    an earlier load cached it: "" when it passed, else how it missed; None when nobody checked yet."""
    if manifest.probe is None:
        return "the artifact has no probe file to check bf16 against; re-export it"
    key = bf16_key(variant)
    recorded = manifest.extra.get("openvino", {}).get("bf16")
    found = (
        recorded
        if isinstance(recorded, dict) and recorded.get("key") == key
        else _load_checks(cache_dir).get("gates", {}).get(key)
    )
    if not isinstance(found, dict) or "parity" not in found:
        return None
    return "; ".join(BF16_GATE.failures(Parity(**found["parity"])))


def check_bf16(
    directory: Path, manifest: Manifest, variant: Variant, measure: Callable[[list[str]], Any], cache_dir: Path
) -> str:
    """Run bf16's gate with `measure(texts) -> (n, dim)` on the probe texts and cache the verdict: "" when it
    passes, else why not."""
    found = bf16_check(directory, manifest, measure) | {"key": bf16_key(variant)}
    _store_check(cache_dir, "gates", found["key"], found)
    return "; ".join(BF16_GATE.failures(Parity(**found["parity"])))


def bf16_key(variant: Variant) -> str:
    """What a bf16 verdict depends on: the graph that runs, the OpenVINO version and the CPU."""
    return _key("bf16", variant.sha256, openvino.version(), openvino.cpu_name(), BF16_GATE.describe())


def bf16_check(directory: Path, manifest: Manifest, measure: Callable[[list[str]], Any]) -> dict[str, Any]:
    """Run the probe texts through `measure` and compare with the stored PyTorch fp32 embeddings."""
    import numpy as np

    assert manifest.probe is not None
    probe = json.loads(safe_member(directory, manifest.probe.file).read_text(encoding="utf-8"))
    reference = np.asarray(probe["embeddings"], dtype=np.float32)
    measured = probe_parity(measure, list(probe["texts"]), reference, probe["reference"])
    return {
        "parity": asdict(measured),
        "gate": BF16_GATE.describe(),
        "passed": not BF16_GATE.failures(measured),
        "openvino": openvino.version(),
        "cpu": openvino.cpu_name(),
    }


def cached_speeds(cache_dir: Path, keys: dict[str, str]) -> dict[str, float]:
    """{label: texts/s} for the labels whose key (`speed_key`) has a cached measurement."""
    found = _load_checks(cache_dir).get("speeds", {})
    return {label: float(found[key]) for label, key in keys.items() if isinstance(found.get(key), (int, float))}


def store_speeds(cache_dir: Path, keys: dict[str, str], speeds: dict[str, float]) -> None:
    for label, value in speeds.items():
        _store_check(cache_dir, "speeds", keys[label], round(value, 1))


def speed_key(label: str, sha256: str, objective: str, threads: int, versions: str) -> str:
    """What a measured speed depends on: the option, its file, the objective's workload, this CPU and the
    thread count, the engine versions."""
    return _key(label, sha256, objective, WORKLOADS[objective], cpu_name(), threads, versions)


# The work each objective is timed on: batches of short texts, as a bulk caller sends them (8 x 16 tokens
# predicted the int8 / fp32 speed ratio of encoding 1,000 STS-dev sentences within 0.02 for t and MiniLM on the
# 2-core AMD EPYC; 8 x 32 called a tie where int8 was 1.25x faster on MiniLM), or one short text per call, as a
# server answering queries gets them. Each candidate runs it TIMED_CALLS times and keeps the fastest call (the
# first allocates and warms up; for latency, the median after one warm-up call): a first load on a small
# machine stays within about twice a cached one (docs/performance.md, "Memory and first load").
WORKLOADS = {"throughput": "8 x 16 tokens, best of 2 calls", "latency": "1 x 16 tokens, median of 3 after 1"}
TIMED_CALLS = 2


def speed(model: Any, objective: str = "throughput", calls: int = TIMED_CALLS) -> float:
    """Texts/s of `model` on `objective`'s workload: the fastest of `calls` calls (for latency, the median of
    at least 3 calls after a warm-up call)."""
    ids = [model.manifest.tokenizer.pad_id + 1 + i % 7 for i in range(min(16, model.max_length))]
    if objective == "latency":
        _timed(model, [ids])  # the first call allocates
        times = sorted(_timed(model, [ids]) for _ in range(max(calls, 3)))
        return 1.0 / times[len(times) // 2]
    batch = [ids] * 8
    return len(batch) / min(_timed(model, batch) for _ in range(calls))


def _timed(model: Any, batch: list[list[int]]) -> float:
    started = time.perf_counter()
    model.embed_token_ids(batch)
    return time.perf_counter() - started


def measure(models: list[Any], objective: str, rounds: int = 1) -> list[float]:
    """Texts/s of each model, the best of `rounds` measurements (`speed`). A first load passes one model at
    a time, so only one candidate is in memory (`loader.settle`)."""
    return [max(speed(model, objective) for _ in range(rounds)) for model in models]


def log_once(message: str, *args: object) -> None:
    text = message % args
    if text not in _logged:
        _logged.add(text)
        log.info(text)


def _key(*parts: object) -> str:
    return "|".join(str(p) for p in parts)


def _load_checks(cache_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((cache_dir / CHECKS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, unreadable or half-written by a crashed run: measure again
        return {}
    return data if isinstance(data, dict) else {}


def _store_check(cache_dir: Path, section: str, key: str, value: object) -> None:
    """Add one verdict to the cache file; a read-only cache only costs a new measurement next time."""
    data = _load_checks(cache_dir)
    data.setdefault(section, {})[key] = value
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(cache_dir / CHECKS_FILE, json.dumps(data, indent=1, sort_keys=True) + "\n")
    except OSError as e:
        log.warning("jina-onnx: cannot cache a backend check in %s (%s); it will run again next time", cache_dir, e)
