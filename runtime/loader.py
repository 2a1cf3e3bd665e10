"""Carrying out a load plan: gather the facts, answer what the plan asks (bf16's gate, speeds), load its choice.

`loadplan.plan_load` decides; this module only does what the decision needs done, then plans again with the
answer, so every load follows the one rule table. Models opened to check or measure are reused for the final
load where they are the choice, so a model is never loaded twice for the same option.

Example:
    >>> model = load(Path("artifacts/jina-t"), load_manifest(Path("artifacts/jina-t")), Request(device="cpu"))  # doctest: +SKIP
    >>> model.precision, model.backend  # doctest: +SKIP
    ('int8', 'onnxruntime')
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .engines import checks, engine_version, openvino
from .errors import DeviceError, require
from .loadplan import CUDA, Facts, Option, Plan, Request, may_run_openvino, plan_load
from .machine import cpu_class, physical_cores, release_freed_memory
from .manifest import Manifest, Precision
from .model import EmbeddingModel

log = logging.getLogger("jina_onnx")

# threads per option: ONNX Runtime intra-op threads or OpenVINO's; None: the physical cores.
Threads = int | None | Callable[[Option], int | None]
_logged: set[str] = set()


def load(
    directory: Path, manifest: Manifest, request: Request, *, threads: Threads = None, cache_dir: Path, **options: Any
) -> EmbeddingModel:
    """The model `request` plans for, loaded; `options` go to `EmbeddingModel` (device_id, pipeline, ...)."""
    try:
        plan, get = settle(directory, manifest, request, threads=threads, cache_dir=cache_dir, **options)
        assert plan.choice is not None
        model = get(plan.choice)
    except DeviceError as e:
        if request.device != "auto":
            raise
        # "auto" promises a working model: CUDA was listed but could not start, so plan again for the CPU.
        log.warning("jina-onnx: %s; falling back to CPU", e)
        request = dataclasses.replace(request, device="cpu")
        plan, get = settle(directory, manifest, request, threads=threads, cache_dir=cache_dir, **options)
        assert plan.choice is not None
        model = get(plan.choice)
    log_once("jina-onnx: %s runs %s (%s; %s)", manifest.name, plan.choice.label, model.onnx_path.name, plan.reason)
    if plan.warning:
        log_once("jina-onnx: %s", plan.warning, level=logging.WARNING)  # shown without logging set up
    return model


def settle(
    directory: Path, manifest: Manifest, request: Request, *, threads: Threads = None, cache_dir: Path, **options: Any
) -> tuple[Plan, Callable[[Option], EmbeddingModel]]:
    """Plan, answer what the plan asks (bf16's gate, speeds) and plan again until it names a choice.

    Returns the final plan and `get(option) -> EmbeddingModel`, which reuses the models opened on the way.
    """
    facts = gather_facts(directory, manifest, request, cache_dir, threads)
    opened: dict[Option, EmbeddingModel] = {}

    tokenizer = None  # one for every candidate: they read the same file

    def get(option: Option) -> EmbeddingModel:
        nonlocal tokenizer
        if option not in opened:
            opened[option] = open_option(
                directory, manifest, option, _threads(threads, option), tokenizer=tokenizer, **options
            )
            tokenizer = opened[option].tokenizer
        return opened[option]

    for _ in range(3):  # at most: check bf16, measure, then the choice
        plan = plan_load(request, facts)
        if plan.check_bf16 is not None:
            option = plan.check_bf16
            failed = checks.check_bf16(
                directory,
                manifest,
                get(option).variant,
                functools.partial(get(option).encode, normalize=False),
                cache_dir,
            )
            if failed:
                log_once("jina-onnx: %s: bf16 misses its gate on this CPU (%s)", manifest.name, failed)
                opened.pop(option)
            facts = dataclasses.replace(facts, bf16_gate=not failed, bf16_failure=failed)
        elif plan.measure:
            # A few silent seconds on a first load look like a hang: one line says what and why (a warning, so
            # Python shows it without any logging set up; `jina-onnx -q` hides it, as it hides progress).
            log.warning(
                "jina-onnx: measuring %s of %s once on this machine to pick the fastest (%s); later loads reuse "
                "the result from %s, and a named precision skips this",
                " vs ".join(option.label for option in plan.measure),
                manifest.name,
                request.objective,
                cache_dir,
                extra={"progress": True},
            )
            # One candidate in memory at a time (the first load peaked at 3x a cached one holding them all),
            # the plan's first (int8 on a CPU, the usual winner) last, so its session is kept for the load.
            measured, previous = {}, None
            for option in reversed(plan.measure):
                if previous is not None:
                    opened.pop(previous, None)
                (measured[option.label],) = checks.measure([get(option)], request.objective)
                previous = option
            release_freed_memory()  # the candidates closed above
            checks.store_speeds(cache_dir, _speed_keys(manifest, request.objective, threads, plan.measure), measured)
            facts = dataclasses.replace(facts, speeds={**facts.speeds, **measured})
        else:
            return plan, get
    raise AssertionError(f"the load plan did not settle: {plan}")


def gather_facts(
    directory: Path, manifest: Manifest, request: Request, cache_dir: Path, threads: Threads = None
) -> Facts:
    """What `plan_load` needs to know about this machine and artifact; imports OpenVINO only where it may run."""
    ort = require("onnxruntime", "cpu")
    cpu = cpu_class()
    facts = Facts(
        name=manifest.name,
        variants=tuple(p.value for p in manifest.variants),
        providers=tuple(ort.get_available_providers()),
        rejected=dict(manifest.rejected),
        openvino=openvino.installed(),
        env_backend=os.environ.get(checks.ENV, "").strip(),
        cpu_class=cpu.name,
        int8_units=cpu.int8_units,
    )
    if not may_run_openvino(request, facts):
        facts = dataclasses.replace(facts, openvino=False)  # and OpenVINO is never imported
    if facts.openvino:
        graph = checks.openvino_variant(manifest) if any(v in facts.variants for v in ("fp32", "fp32-opt")) else None
        recorded = checks.recorded_bf16(manifest, graph, cache_dir) if graph else None
        facts = dataclasses.replace(
            facts,
            bf16_units=openvino.cpu_has_bf16(),
            bf16_gate=None if recorded is None else not recorded,
            bf16_failure=recorded or "",
        )
    options = _all_options(facts)
    keys = _speed_keys(manifest, request.objective, threads, options)
    return dataclasses.replace(facts, speeds=checks.cached_speeds(cache_dir, keys))


def open_option(
    directory: Path, manifest: Manifest, option: Option, threads: int | None, **options: Any
) -> EmbeddingModel:
    """One option loaded as it stands (export, verify and the benchmarks use this for a fixed choice)."""
    variant = manifest.variants[Precision(option.variant)]
    try:
        return EmbeddingModel(
            directory,
            manifest,
            variant,
            option.device,
            threads,
            backend=option.engine,
            precision=option.precision,
            **options,
        )
    except openvino.UnreadableGraph as e:
        fp32 = manifest.variants.get(Precision.FP32)
        if fp32 is None or fp32 is variant:
            raise
        # An OpenVINO that does not know one of ONNX Runtime's fused ops still runs the plain graph.
        log_once("jina-onnx: %s; OpenVINO runs %s instead", e, fp32.file)
        return EmbeddingModel(
            directory,
            manifest,
            fp32,
            option.device,
            threads,
            backend=option.engine,
            precision=option.precision,
            **options,
        )


def log_once(message: str, *args: object, level: int = logging.INFO) -> None:
    text = message % args
    if text not in _logged:
        _logged.add(text)
        log.log(level, text)


def _threads(threads: Threads, option: Option) -> int | None:
    return threads(option) if callable(threads) else threads


def _all_options(facts: Facts) -> tuple[Option, ...]:
    devices = ("cpu", "cuda") if CUDA in facts.providers else ("cpu",)
    found = [Option("onnxruntime", d, v, v) for d in devices for v in facts.variants]
    graph = next((v for v in ("fp32-opt", "fp32") if v in facts.variants), None)
    if facts.openvino and graph:
        found += [Option("openvino", "cpu", graph, arithmetic) for arithmetic in ("fp32", "bf16")]
    return tuple(found)


def _speed_keys(manifest: Manifest, objective: str, threads: Threads, options: tuple[Option, ...]) -> dict[str, str]:
    """The cache key of each option's measured speed (`checks.speed_key`)."""
    keys = {}
    for option in options:
        keys[option.label] = checks.speed_key(
            option.label,
            manifest.variants[Precision(option.variant)].sha256,
            objective,
            _threads(threads, option) or physical_cores(),
            engine_version(option.engine),
        )
    return keys
