"""`jina-onnx serve`: one server process, or `--workers N` of them (workers.py), on a port checked first.

Kept apart from `app.py` (the ASGI app) and `workers.py` (the processes), which both sit below it.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
from typing import Any

from ..errors import require
from .app import create_app
from .requests import Limits
from .workers import WorkerConfig, check_port, url

log = logging.getLogger("jina_onnx")


def serve(
    models: list[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    limits: Limits = Limits(),
    api_key: str | None = None,
    backend: str = "auto",
    batches_in_flight: int | None = None,
    optimize_for: str = "latency",
    workers: int = 1,
) -> None:
    """Load and warm every model, then serve until SIGTERM/SIGINT (in-flight requests finish first).

    `batches_in_flight`: batches of one model that run at once; default 2 for ONNX Runtime on a CPU with 2 or
    more cores (each session thread count is then cores // 2 unless `threads` says otherwise), else 1.
    `workers`: server processes on the same socket, each with its own copy of the models and 1/N of the cores
    (see `workers.py`).
    """
    uvicorn = require("uvicorn", "serve")
    check_port(host, port)  # before loading: a port in use should not cost a model load to find out
    config = WorkerConfig(
        models,
        device=device,
        precision=precision,
        threads=threads,
        backend=backend,
        batches_in_flight=batches_in_flight,
        optimize_for=optimize_for,
        limits=limits,
        api_key=api_key,
    )
    options: dict[str, Any] = {
        "log_level": "warning",
        "timeout_graceful_shutdown": 30,
        "limit_concurrency": None,
        "access_log": False,
        "proxy_headers": False,  # nothing here reads the client's address: one ASGI layer less per request
    }
    if workers > 1:
        from ..machine import physical_cores
        from .workers import run_workers  # multiprocessing only when asked for

        warn_if_public(host, api_key)
        run_workers(
            dataclasses.replace(config, cores=max(1, physical_cores() // workers)), workers, host, port, options
        )
        return
    loaded, flights, lone = config.load()
    app = create_app(loaded, limits, api_key, flights, lone, address=url(host, port))
    warn_if_public(host, api_key)
    # uvicorn handles SIGTERM/SIGINT while serving (stop accepting, finish requests in flight), then restores
    # the previous handler and raises the signal again. With Python's default handler that ends the process
    # with -15 after a clean shutdown; this one lets `serve` return, so the exit status is 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.run(app, host=host, port=port, **options)


def warn_if_public(host: str, api_key: str | None) -> None:
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "jina-onnx: listening on %s: reachable from other machines%s",
            host,
            "" if api_key else " with no API key (--api-key or JINA_ONNX_API_KEY)",
        )
