"""Loading the models a server answers with: each loaded once, with the threads its engine should use."""

from __future__ import annotations

import logging

from ..errors import InputError
from ..machine import physical_cores
from ..model import EmbeddingModel
from .batcher import CPU_SUB_BATCH

log = logging.getLogger("jina_onnx")


def load_models(
    models: list[str],
    *,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    backend: str = "auto",
    batches_in_flight: int | None = None,
    optimize_for: str = "latency",
    cores: int | None = None,
) -> tuple[dict[str, EmbeddingModel], dict[str, int], dict[str, EmbeddingModel]]:
    """Load and warm each model once, for serving: {name: model}, {name: batches in flight} and {name: the same
    variant on every core, for a request that has the server to itself} (see below).

    "auto" choices are measured for `optimize_for`: latency by default, since a server mostly answers single
    queries. An engine that gains from several batches at once (ONNX Runtime on a CPU) runs `min(2, cores)`
    batches in flight by default, each session on `cores // batches` threads: that keeps a CPU busy that the
    event loop shares better than one batch on every core (see Batcher). OpenVINO cuts each batch across its
    streams itself: one batch, all threads. `cores`: the cores this process has (default: all physical cores;
    `serve --workers N` gives each worker its share).

    Example:
        >>> loaded, in_flight, lone = load_models(["jina-embedding-t-en-v1"], device="cpu")  # doctest: +SKIP
        >>> in_flight  # doctest: +SKIP
        {'jina-embedding-t-en-v1': 2}
    """
    from ..artifact import read_manifest, resolve_artifact
    from ..engines import concurrent_batches
    from ..loader import load
    from ..loadplan import Option, Request, check
    from ..registry import home_dir

    loaded: dict[str, EmbeddingModel] = {}
    flights: dict[str, int] = {}
    lone: dict[str, EmbeddingModel] = {}
    share = cores  # a worker's share of the machine, or None: the engine's default (all physical cores)
    cores = cores or physical_cores()
    split = batches_in_flight or min(2, cores)
    request = Request(device=device, precision=precision, backend=backend, objective=optimize_for)
    check(request)

    def threads_for(option: Option) -> int | None:
        # Known per option before loading, so each model loads once with its share.
        if threads is not None:
            return threads
        if (split > 1 or share) and concurrent_batches(option.engine, option.device):
            return max(1, cores // split)
        return share

    for ref in models:
        directory = resolve_artifact(ref, None)
        model = load(
            directory,
            read_manifest(directory),
            request,
            threads=threads_for,
            cache_dir=home_dir(None),
            allow_spinning=False,
        )  # the event loop needs the cores between batches
        # Warm the shapes the batcher runs: calls of one text and of a CPU sub-batch (batcher.CPU_SUB_BATCH), not
        # the 32 x 512 that `warmup` does by default. ONNX Runtime's CPU arena keeps what the largest shape
        # took: t int8 held 1.2 GB after the default warmup, per worker.
        model.warmup(batch_sizes=(1, CPU_SUB_BATCH) if model.device == "cpu" else (1, 32))
        count = split if model.engine.concurrent_batches else (batches_in_flight or 1)
        if model.name in loaded:
            raise InputError(f"two -m arguments load the same model name {model.name!r}")
        loaded[model.name], flights[model.name] = model, count
        if model.engine.concurrent_batches and model.device == "cpu" and threads is None and (share or split > 1):
            # Batches run on a slice of the cores each, with idle threads asleep: right under load, but a lone
            # one-text request then runs on one core and wakes no one to help (t int8: p50 1.33 ms through the
            # server vs 0.67 ms for a bare batch-1 `encode`). The batcher runs such a request on a second session
            # of the same file with every core and spinning threads, as `encode` does (docs/performance.md has
            # its memory: one more copy of the graph).
            lone[model.name] = load(
                directory,
                model.manifest,
                Request(device="cpu", precision=model.precision, backend=model.backend, objective=optimize_for),
                threads=physical_cores(),
                cache_dir=home_dir(None),
            )
            lone[model.name].warmup(batch_sizes=(1,), lengths=(16, 64))
        log.info(
            "jina-onnx: %s on %s (%s, %s), %d batch(es) in flight",
            model.name,
            model.device,
            model.backend,
            model.precision,
            count,
        )
    return loaded, flights, lone
