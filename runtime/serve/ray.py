"""`jina-onnx serve --ray`: the server's ASGI app in Ray Serve replicas, on one machine or a cluster.

Each replica is a Ray actor that loads the models itself (nothing heavy is pickled: the deployment carries the
`WorkerConfig` as JSON) with the threads of the CPUs it reserves, then builds the very app `serve` runs
(`create_app`: the same routes, JSON errors, API key, token-budget batcher) through Ray Serve's late-bound
ingress (`__serve_build_asgi_app__`). Ray Serve places the replicas on nodes, routes each request to the
less busy of two replicas, restarts dead ones and autoscales; its proxy (one, on the node `serve --ray` runs
on) is the HTTP front door. Every answer names the Ray node and replica that made it (`jina-onnx-node`,
`jina-onnx-replica` headers).

Sizes (docs/performance.md, "Ray Serve"): Ray lets a replica hold `max_ongoing_requests` requests at once
(Ray's default 5); behind it our batcher would never see more than 5 requests to merge, so each replica takes
`max_requests` (64, as many as the 64 clients the server is measured with) and the autoscaler's target is in
the same unit, requests in a replica (`target_requests`, 16).

Example, a Ray Serve config file (`serve run config.yaml`; docs/deploy.md):
    applications:
      - name: jina-onnx
        route_prefix: /
        import_path: jina_onnx.serve.ray:build
        args: {models: [jina-embedding-t-en-v1], replicas: 2, cpus_per_replica: 2}
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from typing import Any

from ..errors import JinaOnnxError, require
from .replicas import ReplicaError, Scaling, check_placement
from .requests import Limits
from .workers import WorkerConfig

require("ray.serve", "ray")
import ray  # noqa: E402  (after `require`, which names the extra when Ray Serve is missing)
from ray import serve  # noqa: E402

log = logging.getLogger("jina_onnx")

APP_NAME = "jina-onnx"
DEPLOYMENT = "EmbeddingServer"
NODE_HEADER = b"jina-onnx-node"
REPLICA_HEADER = b"jina-onnx-replica"
PLACEMENT_TIMEOUT = 30.0  # seconds for every replica to start before `serve --ray` gives up and says why


@serve.ingress()
class EmbeddingServer:
    """One replica: the models loaded with this actor's CPUs (or its GPU), serving `create_app`."""

    def __init__(self, config: str) -> None:
        context = ray.get_runtime_context()
        assigned = context.get_assigned_resources()
        settings = WorkerConfig.from_json(config)
        if settings.api_key is None and os.environ.get("JINA_ONNX_API_KEY"):
            # A config file leaves the key out (it would be stored with the deployment): each replica reads it
            # from its own environment, as `serve` does.
            settings = dataclasses.replace(settings, api_key=os.environ["JINA_ONNX_API_KEY"])
        cores = max(1, int(assigned.get("CPU", 1)))  # Ray reserves CPUs, it does not pin them: threads to match
        if assigned.get("GPU") and settings.device == "auto":
            settings = dataclasses.replace(settings, device="cuda")
        self.settings = dataclasses.replace(settings, cores=cores)
        self.loaded = self.settings.load()
        replica = serve.get_replica_context().replica_id.unique_id
        self.headers = [(NODE_HEADER, context.get_node_id().encode()), (REPLICA_HEADER, replica.encode())]

    def __serve_build_asgi_app__(self) -> Any:
        from .app import create_app

        models, flights, lone = self.loaded
        return _with_headers(
            create_app(models, self.settings.limits, self.settings.api_key, flights, lone), self.headers
        )


def _with_headers(app: Any, headers: list[tuple[bytes, bytes]]) -> Any:
    """`app` with `headers` added to every HTTP answer (which node and replica answered)."""

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await app(scope, receive, send_with_headers)

    return asgi


def application(config: WorkerConfig, scaling: Scaling) -> Any:
    """The Ray Serve application (`serve.run(application(...))`); nothing is loaded until a replica starts."""
    deployment = serve.deployment(name=DEPLOYMENT, **scaling.deployment_options())(EmbeddingServer)
    return deployment.bind(config.to_json())


def build(args: dict[str, Any]) -> Any:
    """The builder a Ray Serve config file names (`import_path: jina_onnx.serve.ray:build`).

    `args`: `models` (a list, required), the `WorkerConfig` fields (`precision`, `device`, `backend`,
    `optimize_for`, `api_key`, `limits`: a dict of `Limits` fields) and the `Scaling` fields (`replicas`: a
    number or "auto"). Leave `api_key` out of a config file: each replica reads JINA_ONNX_API_KEY from its
    environment.

    Example:
        >>> app = build({"models": ["jina-embedding-t-en-v1"], "replicas": 2})  # doctest: +SKIP
        >>> serve.run(app, name="jina-onnx")  # doctest: +SKIP
    """
    from ..errors import InputError

    args = dict(args)
    models = args.pop("models", None)
    if isinstance(models, str):
        models = [models]
    if not models or not all(isinstance(m, str) for m in models):
        raise InputError(f"args.models must be a list of model names or directories, got {models!r}")
    scaling_fields = {f.name for f in dataclasses.fields(Scaling)}
    worker_fields = {f.name for f in dataclasses.fields(WorkerConfig)} - {"models", "cores", "threads"}
    unknown = sorted(set(args) - scaling_fields - worker_fields)
    if unknown:
        raise InputError(f"unknown args {unknown}; known: {sorted(scaling_fields | worker_fields | {'models'})}")
    scaling = {k: v for k, v in args.items() if k in scaling_fields}
    if scaling.get("replicas") == "auto":
        scaling["replicas"] = None
    worker = {k: v for k, v in args.items() if k in worker_fields}
    worker["limits"] = Limits(**worker.get("limits", {}))
    return application(WorkerConfig(models, **worker), Scaling(**scaling))


def wait_until_running(timeout: float = PLACEMENT_TIMEOUT, *, poll: float = 0.25) -> None:
    """Block until the application runs; ReplicaError saying why after `timeout` seconds or a failed deploy."""
    deadline = time.monotonic() + timeout
    while True:
        status = serve.status().applications.get(APP_NAME)
        state = str(getattr(status, "status", "")).rsplit(".", 1)[-1]
        if state == "RUNNING":
            return
        if state in ("DEPLOY_FAILED", "UNHEALTHY") or time.monotonic() > deadline:
            message = (getattr(status, "message", "") or "").strip().splitlines()
            for deployment in getattr(status, "deployments", {}).values():
                message += (deployment.message or "").strip().splitlines()
            why = next((line for line in message if line.strip()), "no reason given")
            raise ReplicaError(
                f"the replicas did not start within {timeout:g} s ({state or 'not deployed'}): {why[:400]}"
            )
        time.sleep(poll)


def serve_on_ray(
    config: WorkerConfig,
    scaling: Scaling,
    *,
    address: str | None,
    host: str = "127.0.0.1",
    port: int = 8080,
    request_timeout: float = 60.0,
    timeout: float = PLACEMENT_TIMEOUT,
) -> None:
    """`jina-onnx serve --ray`: deploy on the cluster at `address` (None: $RAY_ADDRESS, else a local Ray started
    here) and serve until SIGTERM/SIGINT, then take the application down (and a local Ray with it)."""
    import signal
    import threading

    from ..corpus.ray import init_quiet, stderr_to_file
    from .workers import prepare

    local = address is None and not os.environ.get("RAY_ADDRESS")
    stopping = threading.Event()
    with stderr_to_file() as terminal:  # Ray's own output goes to a log file, named if this fails
        try:
            init_quiet(ray, None if local else address or os.environ["RAY_ADDRESS"])
        except (ConnectionError, RuntimeError, ray.exceptions.RayError) as error:
            where = "start Ray" if local else f"join the Ray cluster at {address or os.environ.get('RAY_ADDRESS')}"
            raise JinaOnnxError(f"could not {where}: {str(error).strip().splitlines()[0][:300]}") from None
        # After ray.init, which sets handlers of its own: the first signal takes the application down cleanly.
        previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        deployed = False
        try:
            check_placement(ray.nodes(), scaling)
            if local:
                # As --workers: "auto" is measured once, with a replica's threads, and read by every replica
                # instead of each measuring against the others; a wrong -m fails here, before anything deploys.
                prepare(dataclasses.replace(config, cores=max(1, int(scaling.cpus_per_replica))))
            deployed = True
            try:
                serve.start(
                    proxy_location="HeadOnly",
                    http_options={"host": host, "port": port, "request_timeout_s": request_timeout},
                )
                serve.run(application(config, scaling), name=APP_NAME, route_prefix="/", blocking=False)
            except (RuntimeError, ray.exceptions.RayError, serve.exceptions.RayServeException) as error:
                # Ray Serve's own failure (its proxy could not listen, say): its first line, not a traceback.
                first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
                raise JinaOnnxError(f"Ray Serve could not start the application: {first.strip()[:300]}") from None
            wait_until_running(timeout)
            if log.isEnabledFor(logging.INFO):
                replicas = "auto" if scaling.replicas is None else str(scaling.replicas)
                print(
                    f"jina-onnx: serving {', '.join(config.models)} on http://{host}:{port} through Ray Serve "
                    f"({replicas} replicas) (Ctrl-C or SIGTERM to stop)",
                    file=terminal,
                )
            while not stopping.wait(1.0):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            try:
                if deployed:
                    with contextlib.suppress(serve.exceptions.RayServeException):  # never started: nothing to take down
                        serve.delete(APP_NAME)
                        if local:
                            serve.shutdown()
            finally:
                ray.shutdown()
