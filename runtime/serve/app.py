"""`jina-onnx serve`: an OpenAI-compatible embeddings server with dynamic batching (the `serve` extra).

Starlette + uvicorn (+ orjson for responses): the smallest well-kept ASGI stack that gives streaming request bodies (so a body
limit is enforced while reading, not after), lifespan hooks, and uvicorn's graceful SIGTERM (stop
accepting, finish requests in flight, exit). The `serve` extra adds uvloop and httptools, which uvicorn
picks up by itself: on 2 cores they cut the CPU per one-text request (inference included) from 1.75 to
1.50 ms (t int8, concurrency 64). Pydantic/FastAPI would add a validation layer whose error
messages we would rewrite anyway. Metrics use prometheus-client.

Endpoints: POST /v1/embeddings (OpenAI); TEI's POST /embed, POST /, POST /tokenize and GET /info; GET /v1/models,
GET /health, GET /metrics.

Example:
    $ jina-onnx serve -m jina-embedding-t-en-v1 --port 8080
    >>> from openai import OpenAI  # doctest: +SKIP
    >>> client = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="unused")  # doctest: +SKIP
    >>> client.embeddings.create(model="jina-embedding-t-en-v1", input=["a text"]).data[0].embedding  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .. import __version__
from ..errors import InputError, require
from ..machine import cpu_class
from ..model import EmbeddingModel
from .batcher import Batcher
from .hotpath import EmbeddingRoutes, read_body
from .requests import ApiError, Limits, check_fields, check_key, error_body, json_type, parse_body
from .requests import texts as texts_of

log = logging.getLogger("jina_onnx")


class Metrics:
    """Prometheus metrics of one app (its own registry, so several apps in one process don't clash)."""

    def __init__(self) -> None:
        prometheus = require("prometheus_client", "serve")
        self.registry = prometheus.CollectorRegistry()
        self.requests = prometheus.Counter(
            "jina_onnx_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=self.registry
        )
        self.latency = prometheus.Histogram(
            "jina_onnx_request_seconds",
            "Request latency",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30),
        )
        self.batch_texts = prometheus.Histogram(
            "jina_onnx_batch_texts",
            "Texts per inference batch",
            ["model"],
            registry=self.registry,
            buckets=tuple(2**i for i in range(13)),
        )
        self.batch_tokens = prometheus.Histogram(
            "jina_onnx_batch_tokens",
            "Tokens per inference batch",
            ["model"],
            registry=self.registry,
            buckets=tuple(2**i for i in range(4, 20)),
        )
        self.queue_depth = prometheus.Gauge(
            "jina_onnx_queue_depth", "Requests waiting for a batch", ["model"], registry=self.registry
        )
        self._render = prometheus.generate_latest

    def render(self) -> bytes:
        return self._render(self.registry)


def create_app(
    models: dict[str, EmbeddingModel],
    limits: Limits = Limits(),
    api_key: str | None = None,
    in_flight: dict[str, int] | None = None,
    lone: dict[str, EmbeddingModel] | None = None,
    address: str = "",
) -> Any:
    """The ASGI app serving `models` (name -> loaded model); batchers start with the app's lifespan.
    `in_flight` gives a model's batches that may run at once (default 1; see `Batcher`), `lone` a model's
    session for a request that has the server to itself (`load_models`; default: the same model).

    Example:
        >>> app = create_app({"jina-embedding-t-en-v1": build_model("jina-embedding-t-en-v1")})  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8080)  # doctest: +SKIP
    """
    require("starlette", "serve")
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    if not models:
        raise InputError("no model to serve: pass at least one -m MODEL")
    metrics = Metrics()
    batchers: dict[str, Batcher] = {}
    state = {"ready": False}

    def batcher_for(name: str, model: EmbeddingModel) -> Batcher:
        def on_batch(texts: int, tokens: int) -> None:
            metrics.batch_texts.labels(name).observe(texts)
            metrics.batch_tokens.labels(name).observe(tokens)

        batcher = Batcher(
            model,
            max_batch_tokens=limits.max_batch_tokens or model.default_token_budget,
            max_batch_wait_ms=limits.max_batch_wait_ms,
            max_queue=limits.max_queue,
            on_batch=on_batch,
            in_flight=(in_flight or {}).get(name, 1),
            alone=lambda: hot.active <= 1,
            lone_model=(lone or {}).get(name),
        )
        metrics.queue_depth.labels(name).set_function(lambda: batcher.depth)
        return batcher

    def observe(route: str, status: int, seconds: float) -> None:
        metrics.requests.labels(route, str(status)).inc()
        metrics.latency.labels(route).observe(seconds)

    # TEI serves one model and its clients (huggingface_hub, LlamaIndex) send no `model`: its routes answer with
    # the first model served; OpenAI's route asks for `model` when there are several.
    hot = EmbeddingRoutes(models, batchers, limits, api_key, observe, default_model=next(iter(models)))

    async def unreachable(request: Request) -> Response:
        raise RuntimeError(f"{request.url.path}: POST is answered by the hot path")

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        for name, model in models.items():
            batchers[name] = batcher_for(name, model)
            batchers[name].start()
        # The models, tokenizers and libraries loaded so far live as long as the server: moved out of the
        # collector's sight, the garbage collections that per-request objects trigger stop walking them.
        gc.collect()
        gc.freeze()
        state["ready"] = True
        log.info(
            "jina-onnx: serving %s%s", ", ".join(models), f" on {address} (Ctrl-C or SIGTERM to stop)" * bool(address)
        )
        yield
        state["ready"] = False
        for batcher in batchers.values():
            await batcher.stop()

    def endpoint(name: str, handler: Callable[[Request], Awaitable[Any]], public: bool = False) -> Callable:
        async def wrapped(request: Request) -> Response:
            start = time.perf_counter()
            try:
                if not public:
                    check_key(request.headers.get("authorization", ""), api_key)
                response = await handler(request)
            except ApiError as error:
                response = JSONResponse(error_body(error), status_code=error.status, headers=error.headers)
            except Exception as error:  # a bug: log it for the operator, give the client one line, no trace
                log.exception("jina-onnx: %s failed", name)
                response = JSONResponse(
                    {
                        "error": {
                            "message": f"internal error: {type(error).__name__}",
                            "type": "server_error",
                            "code": 500,
                        }
                    },
                    status_code=500,
                )
            observe(name, response.status_code, time.perf_counter() - start)
            return response

        return wrapped

    async def tei_tokenize(request: Request) -> Response:
        body = parse_body(await read_body(request.scope, request.receive, limits.max_request_bytes))
        check_fields(body, {"inputs", "add_special_tokens", "model", "prompt_name"}, "inputs")
        texts = texts_of(body.get("inputs"), "inputs")
        if len(texts) > limits.max_inputs_per_request:
            raise ApiError(413, f"{len(texts)} inputs is over the limit of {limits.max_inputs_per_request} per request")
        special = body.get("add_special_tokens", True)
        if not isinstance(special, bool):
            raise ApiError(400, f"'add_special_tokens' must be true or false, got {json_type(special)}")
        model = models[hot.resolve(body.get("model"), hot.default_model)]
        described = await asyncio.get_running_loop().run_in_executor(None, model.tokenizer.describe, texts, special)
        return JSONResponse(described)

    async def tei_info(request: Request) -> Response:
        name = next(iter(models))
        model = models[name]
        return JSONResponse(
            {
                "model_id": name,
                "model_sha": model.variant.sha256,
                "model_dtype": model.precision,
                "model_type": {"embedding": {"pooling": model.manifest.pooling.value}},
                "max_input_length": model.max_length,
                "max_batch_tokens": limits.max_batch_tokens or model.default_token_budget,
                "max_client_batch_size": limits.max_inputs_per_request,
                "max_concurrent_requests": limits.max_queue,
                "tokenization_workers": 1,
                "version": __version__,
                "models": list(models),
                # Not TEI's: what runs here and on which kind of CPU (docs/performance.md, "CPU classes").
                "backend": model.backend,
                "cpu_class": cpu_class().name,
            }
        )

    async def list_models(request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {
                        "id": name,
                        "object": "model",
                        "created": 0,
                        "owned_by": "jina-onnx",
                        "dim": m.dim,
                        "max_length": m.max_length,
                        "precision": m.precision,
                        "device": m.device,
                        "backend": m.backend,
                    }
                    for name, m in models.items()
                ],
            }
        )

    async def health(request: Request) -> Response:
        if not state["ready"]:
            raise ApiError(503, "loading")
        return JSONResponse({"status": "ok", "models": list(models)})

    async def prometheus(request: Request) -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    routes = [
        # POST on these three never reaches Starlette (see `asgi` below); other methods get its 405.
        *(Route(path, endpoint(path, unreachable), methods=["POST"]) for path in hot.handlers),
        Route("/tokenize", endpoint("/tokenize", tei_tokenize), methods=["POST"]),
        Route("/info", endpoint("/info", tei_info), methods=["GET"]),
        Route("/v1/models", endpoint("/v1/models", list_models), methods=["GET"]),
        Route("/health", endpoint("/health", health, public=True), methods=["GET"]),
        Route("/metrics", endpoint("/metrics", prometheus, public=True), methods=["GET"]),
    ]

    async def http_error(request: Request, error: Exception) -> Response:
        # Starlette's own 404 and 405 in the JSON error shape of every other answer, saying what is served.
        status = getattr(error, "status_code", 500)
        allowed = (getattr(error, "headers", None) or {}).get("Allow", "")
        if status == 405:
            # Starlette's Allow header lists a set in no fixed order; the message names them sorted, HEAD left out.
            usable = sorted({m.strip() for m in allowed.split(",") if m.strip() and m.strip() != "HEAD"})
            message = (
                f"{request.method} is not allowed on {request.url.path}; use {', '.join(usable) or 'another method'}"
            )
        elif status == 404:
            message = f"no route {request.url.path}; routes: " + ", ".join(
                f"{'/'.join(sorted((route.methods or set()) - {'HEAD'}))} {route.path}" for route in routes
            )
        else:
            message = str(getattr(error, "detail", "")) or f"HTTP {status}"
        headers = {"Allow": allowed} if allowed else None
        return JSONResponse(error_body(ApiError(status, message)), status_code=status, headers=headers)

    from starlette.exceptions import HTTPException

    starlette = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # The embedding routes' POSTs go straight to their handlers: see hotpath.py for why.
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = hot.handlers.get(scope["path"])
            if handler is not None:
                return await handler(scope, receive, send)
        await starlette(scope, receive, send)

    asgi.state = starlette.state  # type: ignore[attr-defined]  # for tests that look at the app
    return asgi
