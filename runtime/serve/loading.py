"""Loading the models a server answers with: each loaded once, with the threads its engine should use."""

from __future__ import annotations

import logging

from ..errors import InputError
from ..machine import physical_cores
from ..model import EmbeddingModel

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
) -> tuple[dict[str, EmbeddingModel], dict[str, int]]:
    """Load and warm each model once, for serving: {name: model} and {name: batches in flight}.

    "auto" choices are measured for `optimize_for`: latency by default, since a server mostly answers single
    queries. An engine that gains from several batches at once (ONNX Runtime on a CPU) runs `min(2, cores)`
    batches in flight by default, each session on `cores // batches` threads: that keeps a CPU busy that the
    event loop shares better than one batch on every core (see Batcher). OpenVINO cuts each batch across its
    streams itself: one batch, all threads.

    Example:
        >>> loaded, in_flight = load_models(["jina-embedding-t-en-v1"], device="cpu")  # doctest: +SKIP
        >>> in_flight  # doctest: +SKIP
        {'jina-embedding-t-en-v1': 2}
    """
    from ..engines import concurrent_batches
    from ..loader import load
    from ..loadplan import Option, Request, check
    from ..model import read_manifest, resolve_artifact
    from ..registry import home_dir

    loaded: dict[str, EmbeddingModel] = {}
    flights: dict[str, int] = {}
    cores = physical_cores()
    split = batches_in_flight or min(2, cores)
    request = Request(device=device, precision=precision, backend=backend, objective=optimize_for)
    check(request)

    def threads_for(option: Option) -> int | None:
        # Known per option before loading, so each model loads once with its share.
        if threads is None and split > 1 and concurrent_batches(option.engine, option.device):
            return max(1, cores // split)
        return threads

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
        model.warmup()
        count = split if model.engine.concurrent_batches else (batches_in_flight or 1)
        if model.name in loaded:
            raise InputError(f"two -m arguments load the same model name {model.name!r}")
        loaded[model.name], flights[model.name] = model, count
        log.info(
            "jina-onnx: %s on %s (%s, %s), %d batch(es) in flight",
            model.name,
            model.device,
            model.backend,
            model.precision,
            count,
        )
    return loaded, flights
