"""`serve --workers N`: N server processes answering on one port, each with its own models and event loop.

One process has one event loop and one GIL: request handling (HTTP, JSON, the Python around each batch) runs
on one core at a time however many the machine has, and on 2 cores its threads already wait for each other
(t int8, one text per request, concurrency 64: 16% of the CPU idle with one process, 1% with two).

Each worker binds its own socket to the port with SO_REUSEPORT, so the kernel spreads connections over the
workers by their addresses. uvicorn's own `--workers` shares one listening socket instead, and whichever
process accepts first takes a burst of keep-alive connections: 64 clients landed mostly on one of two workers,
leaving a core idle (measured here, 2026-12-04). Workers are spawned, not forked (no engine thread pool is
copied half-alive), in their own process group, and this supervisor forwards SIGTERM/SIGINT once, so every
worker finishes its requests in flight; a worker that dies is started again, with a warning.

Each worker loads every model with its share of the cores (cores // N, divided again among its batches in
flight), so N workers run no more engine threads than one; memory grows by one model copy per worker
(docs/performance.md). "auto" choices are measured once, before any worker starts, in a short-lived process
(`prepare`): workers read the cached decision instead of measuring at once against each other, and a wrong
model name or option fails the command with its message before the port is taken.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

from .requests import Limits

log = logging.getLogger("jina_onnx")


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    """What each worker loads and how it answers: `serve`'s arguments, minus where it listens."""

    models: list[str]
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    backend: str = "auto"
    batches_in_flight: int | None = None
    optimize_for: str = "latency"
    cores: int | None = None  # this worker's share of the physical cores
    limits: Limits = Limits()
    api_key: str | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerConfig:
        data = json.loads(text)
        return cls(**{**data, "limits": Limits(**data["limits"])})

    def load(self) -> tuple[dict[str, Any], dict[str, int], dict[str, Any]]:
        from .loading import load_models

        return load_models(
            self.models,
            device=self.device,
            precision=self.precision,
            threads=self.threads,
            backend=self.backend,
            batches_in_flight=self.batches_in_flight,
            optimize_for=self.optimize_for,
            cores=self.cores,
        )


def worker_app(config: WorkerConfig) -> Any:
    """The app of one worker: its models loaded with its share of the cores."""
    import logging

    from .app import create_app

    logging.getLogger("jina_onnx").setLevel(logging.WARNING)  # N workers would repeat every load line
    models, flights, lone = config.load()
    return create_app(models, config.limits, config.api_key, flights, lone)


def run_workers(config: WorkerConfig, workers: int, host: str, port: int, server_options: dict[str, Any]) -> None:
    """Start `workers` worker processes on host:port and supervise them until SIGTERM/SIGINT; see the module
    docstring. `server_options`: uvicorn.Config's settings for every worker."""
    import multiprocessing
    import signal
    import time
    from multiprocessing.connection import wait

    prepare(config)
    context = multiprocessing.get_context("spawn")

    def start(index: int) -> Any:
        process = context.Process(
            target=_worker_main,
            args=(config.to_json(), host, port, server_options),
            name=f"jina-onnx-worker-{index}",
        )
        process.start()
        return process

    processes = [start(i) for i in range(workers)]
    log.info(
        "jina-onnx: %d workers serving %s on %s (Ctrl-C or SIGTERM to stop)",
        workers,
        ", ".join(config.models),
        url(host, port),
    )
    stopping: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        if not stopping:  # once: a second SIGTERM would make uvicorn drop the requests in flight
            stopping.append(signum)
            for process in processes:
                if process.pid is not None:
                    os.kill(process.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    restarts: list[float] = []
    try:
        while not stopping:
            wait([p.sentinel for p in processes], timeout=1.0)
            for index, process in enumerate(processes):
                if process.is_alive() or stopping:
                    continue
                restarts = [t for t in restarts if t > time.monotonic() - 60] + [time.monotonic()]
                if len(restarts) > workers:
                    stop(signal.SIGTERM, None)
                    from ..errors import JinaOnnxError

                    raise JinaOnnxError(
                        f"{process.name} exited with {process.exitcode}, and {len(restarts) - 1} workers before it "
                        "in the last minute: stopping (the log above says why)"
                    )
                log.warning("jina-onnx: %s exited with %s; starting it again", process.name, process.exitcode)
                processes[index] = start(index)
    finally:
        for process in processes:
            process.join(timeout=40)  # uvicorn's graceful shutdown takes up to 30 s
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def check_port(host: str, port: int) -> None:
    """InputError if host:port cannot be bound (in use, or not an address of this machine)."""
    import socket

    from ..errors import InputError

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host, port))  # without SO_REUSEPORT: fails while any other socket holds the port
    except OSError as error:
        raise InputError(f"cannot listen on {host}:{port}: {error.strerror}; pick another --port or --host") from None


def _listening_socket(host: str, port: int) -> Any:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker_main(config: str, host: str, port: int, server_options: dict[str, Any]) -> None:
    os.setpgrp()  # a terminal's Ctrl-C reaches the supervisor alone, which stops every worker once
    import uvicorn

    sock = _listening_socket(host, port)
    app = worker_app(WorkerConfig.from_json(config))
    uvicorn.Server(uvicorn.Config(app, **server_options)).run(sockets=[sock])


def prepare(config: WorkerConfig) -> None:
    """Load every model once in a spawned process and throw it away: it measures what "auto" needs (cached
    for the workers) and raises the user's error (wrong name, unknown option) here, in the command."""
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        failure = pool.submit(_try_load, config.to_json()).result()
    if failure is not None:
        from ..errors import JinaOnnxError

        message, code = failure
        error = JinaOnnxError(message)
        error.exit_code = code
        raise error


def _try_load(config: str) -> tuple[str, int] | None:
    from ..errors import JinaOnnxError

    try:
        WorkerConfig.from_json(config).load()
    except JinaOnnxError as error:  # exceptions with their own arguments don't always unpickle: send the words
        return str(error), error.exit_code
    return None


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
