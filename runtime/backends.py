"""Which engine runs a model on the CPU: ONNX Runtime or OpenVINO, and the checks that decide it.

- `backend="onnxruntime"` runs the artifact's variants (fp32, fp32-opt, int8; fp16 on CUDA).
- `backend="openvino"` runs its fp32 graph with OpenVINO (the fused `model.cpu-opt.onnx` where the artifact
  has it, else `model.onnx`: `openvino_variant`) in fp32, or in `bf16` where the CPU has bf16 units and bf16
  passes its gate: min cosine >= 0.999 (and mean >= 0.9995) to the PyTorch fp32 embeddings
  stored in the artifact's probe file, the same gate as fp16. The export records that check in the manifest
  when OpenVINO is installed there; otherwise it runs at first load, and the verdict is cached.
- `backend="auto"` (the default; $JINA_ONNX_BACKEND overrides it) is ONNX Runtime on CUDA, where OpenVINO is
  not installed, and for the ONNX Runtime-only precisions. Otherwise both engines are measured once on
  this CPU (32 texts x 128 tokens, best of 3 alternating calls, after a warm-up, at the threads asked for)
  and the faster runs; the verdict is cached per model file, precision, CPU, threads and engine versions,
  and the choice is logged once per process.

The cache is `<JINA_ONNX_HOME>/runtime-checks.json` (default ~/.cache/jina-onnx); delete it to measure again.

Example:
    >>> model = build_model("jina-embedding-t-en-v1", backend="openvino", precision="bf16")  # doctest: +SKIP
    >>> model.backend, model.precision  # doctest: +SKIP
    ('openvino', 'bf16')
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import openvino_backend
from .atomic import write_atomically
from .errors import ArtifactError, DeviceError, InputError, require
from .gates import Gate
from .manifest import Manifest, Parity, Precision, Variant, safe_member
from .probe import probe_parity
from .session import physical_cores

log = logging.getLogger("jina_onnx")

BACKENDS = ("auto", "onnxruntime", "openvino")
ENV = "JINA_ONNX_BACKEND"
# OpenVINO runs these; the other precisions are ONNX Runtime graphs.
OPENVINO_PRECISIONS = ("fp32", "bf16")
BF16_GATE = Gate(mean_cosine=0.9995, min_cosine=0.999, batch_invariance=0.999)
CHECKS_FILE = "runtime-checks.json"
_logged: set[str] = set()


def requested_backend(backend: str) -> str:
    """Validate `backend`; "auto" defers to $JINA_ONNX_BACKEND when that is set."""
    if backend not in BACKENDS:
        raise InputError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "auto":
        env = os.environ.get(ENV, "").strip()
        if env:
            if env not in BACKENDS:
                raise InputError(f"${ENV}={env!r} is not one of {', '.join(BACKENDS)}")
            return env
    return backend


def check_openvino_request(precision: str, device: str) -> None:
    """Errors for backend="openvino" that don't need a model: wrong device, wrong precision, missing bf16."""
    if device != "cpu":
        raise DeviceError(f"backend='openvino' runs on the CPU, not {device!r}; use device='cpu' "
                          "(or backend='onnxruntime' for CUDA)")
    if precision not in ("auto", *OPENVINO_PRECISIONS):
        raise InputError(f"precision={precision!r} is an ONNX Runtime variant; OpenVINO runs the fp32 graph in "
                         f"{' or '.join(OPENVINO_PRECISIONS)}: use backend='onnxruntime' for {precision}")
    openvino_backend.openvino()  # MissingDependencyError naming the extra
    if precision == "bf16" and not openvino_backend.cpu_has_bf16():
        raise DeviceError(f"precision='bf16': this CPU ({openvino_backend.cpu_name()}) has no bf16 units; "
                          "use precision='fp32'")


def openvino_variant(manifest: Manifest) -> Variant:
    """The graph OpenVINO runs: fp32-opt (ONNX Runtime's fusions, which OpenVINO reads and runs 2-9% faster
    in bf16 than the unfused graph, same fp32 outputs) where the artifact has it, else fp32.

    Example:
        >>> openvino_variant(manifest).file  # doctest: +SKIP
        'model.cpu-opt.onnx'
    """
    for precision in (Precision.FP32_OPT, Precision.FP32):
        if precision in manifest.variants:
            return manifest.variants[precision]
    raise missing_fp32(manifest)


def bf16_verdict(directory: Path, manifest: Manifest, variant: Variant, measure: Callable[[list[str]], Any],
                 cache_dir: Path) -> tuple[Parity | None, str]:
    """The bf16 gate for `variant` of this artifact on this CPU: (parity or None, "" when it passes else why
    not).

    Taken from the manifest when the export checked it with this OpenVINO on this CPU, else from the cache,
    else measured with `measure(texts) -> (n, dim)` on the probe texts and cached.
    """
    if manifest.probe is None:
        return None, "the artifact has no probe file to check bf16 against; re-export it"
    key = bf16_key(variant)
    recorded = manifest.extra.get("openvino", {}).get("bf16")
    if isinstance(recorded, dict) and recorded.get("key") == key:
        found: dict[str, Any] | None = recorded
    else:
        found = _load_checks(cache_dir).get("gates", {}).get(key)
    if found is None:
        found = bf16_check(directory, manifest, measure) | {"key": key}
        _store_check(cache_dir, "gates", key, found)
    measured = Parity(**found["parity"])
    return measured, "; ".join(BF16_GATE.failures(measured))


def bf16_key(variant: Variant) -> str:
    """What a bf16 verdict depends on: the graph that runs, the OpenVINO version and the CPU."""
    return _key("bf16", variant.sha256, openvino_backend.version(), openvino_backend.cpu_name(),
                BF16_GATE.describe())


def bf16_check(directory: Path, manifest: Manifest, measure: Callable[[list[str]], Any]) -> dict[str, Any]:
    """Run the probe texts through `measure` and compare with the stored PyTorch fp32 embeddings."""
    import numpy as np

    assert manifest.probe is not None
    probe = json.loads(safe_member(directory, manifest.probe.file).read_text(encoding="utf-8"))
    reference = np.asarray(probe["embeddings"], dtype=np.float32)
    measured = probe_parity(measure, list(probe["texts"]), reference, probe["reference"])
    return {"parity": asdict(measured), "gate": BF16_GATE.describe(), "passed": not BF16_GATE.failures(measured),
            "openvino": openvino_backend.version(), "cpu": openvino_backend.cpu_name()}


def cached_choice(cache_dir: Path, key: str) -> dict[str, Any] | None:
    found = _load_checks(cache_dir).get("backend", {}).get(key)
    return found if isinstance(found, dict) and found.get("backend") in BACKENDS else None


def store_choice(cache_dir: Path, key: str, choice: dict[str, Any]) -> None:
    _store_check(cache_dir, "backend", key, choice)


def speed(model: Any, rounds: int = 3) -> float:
    """Texts/s of `model` on 32 texts of 128 tokens: best of `rounds` timed calls after one warm-up."""
    ids = [[model.manifest.tokenizer.pad_id + 1 + (i % 7) for i in range(min(128, model.max_length))]] * 32
    model.embed_token_ids(ids)
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        model.embed_token_ids(ids)
        best = min(best, time.perf_counter() - started)
    return len(ids) / best


def measure_pair(first: Any, second: Any, rounds: int = 3) -> tuple[float, float]:
    """Texts/s of two models, alternating call by call so drift on a shared machine hits both alike."""
    a = b = 0.0
    for _ in range(rounds):
        a = max(a, speed(first, rounds=1))
        b = max(b, speed(second, rounds=1))
    return a, b


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


def _store_check(cache_dir: Path, section: str, key: str, value: dict[str, Any]) -> None:
    """Add one verdict to the cache file; a read-only cache only costs a new measurement next time."""
    data = _load_checks(cache_dir)
    data.setdefault(section, {})[key] = value
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(cache_dir / CHECKS_FILE, json.dumps(data, indent=1, sort_keys=True) + "\n")
    except OSError as e:
        log.warning("jina-onnx: cannot cache a backend check in %s (%s); it will run again next time",
                    cache_dir, e)


def missing_fp32(manifest: Manifest) -> ArtifactError:
    return ArtifactError(f"{manifest.name} has no fp32 variant (model.onnx) for OpenVINO to run; re-export it")


def load_openvino(directory: Path, manifest: Manifest, precision: str, make: Callable[..., Any],
                  cache_dir: Path) -> Any:
    """The fp32 graph (`openvino_variant`) on OpenVINO: bf16 when asked (or, for "auto", where the CPU has it)
    and it passes its gate.

    `make(variant, device, engine, hint)` builds the EmbeddingModel (model.py passes it, so this module
    does not import model.py).
    """
    hint = "fp32" if precision == "fp32" or not openvino_backend.cpu_has_bf16() else "bf16"
    variant = openvino_variant(manifest)
    try:
        model = make(variant, "cpu", "openvino", hint)
    except openvino_backend.UnreadableGraph as e:
        fp32 = manifest.variants.get(Precision.FP32)
        if fp32 is None or fp32 is variant:
            raise
        # An OpenVINO that does not know one of ONNX Runtime's fused ops still runs the plain graph.
        log_once("jina-onnx: %s; OpenVINO runs %s instead", e, fp32.file)
        variant = fp32
        model = make(variant, "cpu", "openvino", hint)
    if hint == "fp32":
        return model
    _, failed = bf16_verdict(directory, manifest, variant, lambda texts: model.encode(texts, normalize=False),
                             cache_dir)
    if not failed:
        return model
    if precision == "bf16":
        raise ArtifactError(f"{manifest.name}: bf16 on OpenVINO misses its gate against PyTorch fp32 on this CPU "
                            f"({failed}); use precision='fp32'")
    log_once("jina-onnx: %s: bf16 misses its gate on this CPU (%s); OpenVINO runs fp32", manifest.name, failed)
    return make(variant, "cpu", "openvino", "fp32")


def load_auto(directory: Path, manifest: Manifest, precision: str, ort_variant: Any, make: Callable[..., Any],
              threads: int | None, cache_dir: Path) -> Any:
    """backend="auto" on a CPU with OpenVINO installed: the faster engine for this model here, measured once."""
    try:
        openvino_graph = openvino_variant(manifest)
    except ArtifactError:  # no fp32 graph for OpenVINO: nothing to measure against
        return make(ort_variant)
    ort = require("onnxruntime", "cpu")
    key = _key(manifest.name, ort_variant.sha256, openvino_graph.sha256, precision,
               openvino_backend.cpu_name(), threads or physical_cores(), ort.__version__,  # type: ignore[attr-defined]
               openvino_backend.version())
    cached = cached_choice(cache_dir, key)
    if cached is not None:
        if cached["backend"] == "openvino":
            model = load_openvino(directory, manifest, precision, make, cache_dir)
        else:
            model = make(ort_variant)
        log_once("jina-onnx: backend auto: %s runs %s %s (measured %s; cached in %s)", manifest.name,
                 model.backend, model.precision, cached.get("texts_per_s"), cache_dir / CHECKS_FILE)
        return model
    candidates = [make(ort_variant)]
    try:
        candidates.append(load_openvino(directory, manifest, precision, make, cache_dir))
    except (ArtifactError, DeviceError) as e:  # OpenVINO can't run it here: ONNX Runtime it is, and say why
        log_once("jina-onnx: backend auto: OpenVINO cannot run %s (%s); using ONNX Runtime", manifest.name, e)
        return candidates[0]
    speeds = measure_pair(*candidates)
    winner = candidates[1] if speeds[1] > speeds[0] else candidates[0]
    texts_per_s = {f"{m.backend} {m.precision}": round(s, 1) for s, m in zip(speeds, candidates)}
    store_choice(cache_dir, key, {"backend": winner.backend, "precision": winner.precision,
                                  "texts_per_s": texts_per_s, "workload": "32 texts x 128 tokens"})
    log_once("jina-onnx: backend auto: %s runs %s %s on this CPU (texts/s at 32 x 128 tokens: %s; cached in %s)",
             manifest.name, winner.backend, winner.precision, texts_per_s, cache_dir / CHECKS_FILE)
    return winner
