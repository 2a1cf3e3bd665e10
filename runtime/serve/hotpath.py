"""The embedding routes (OpenAI's POST /v1/embeddings, TEI's POST /embed and POST /) as plain ASGI handlers.

These carry nearly all of a server's traffic, and for a small model most of a one-text request's cost is
per-request Python, not the model: Starlette's middleware, router and Request/Response objects took 20-25%
of the event loop's time at one text per request (t int8, concurrency 64, py-spy), a watcher task pair per
request another 7%. So the event loop does only what must happen per request on it: read the body with
its size limit, parse and check it (the same pure functions as before, `requests`), queue the texts, and
write the bytes back. Tokenizing, embedding and serializing the response run in the batcher's inference
thread, once per batch (`batcher`). Every other route, and every other method on these paths, stays on
Starlette (`app`), which answers with the same JSON error shape.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..model import EmbeddingModel
from .batcher import Batcher, Overloaded, TooLong
from .requests import (
    ApiError,
    Limits,
    check_dimensions,
    check_fields,
    check_key,
    error_body,
    json_type,
    output_precision,
    parse_body,
    truncation,
)
from .requests import texts as texts_of

log = logging.getLogger("jina_onnx")

OPENAI_FIELDS = {
    "input",
    "model",
    "encoding_format",
    "dimensions",
    "user",
    "truncate",
    "truncation",
    "output_precision",
}
TEI_FIELDS = {"inputs", "normalize", "truncate", "model", "truncation_direction", "prompt_name", "output_precision"}
JSON_HEADERS = [(b"content-type", b"application/json")]

# The response body to come, the request's field of texts, and how that request would allow truncation.
Answer = tuple["asyncio.Future[bytes]", str, str]
Handler = Callable[[dict[str, Any], Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]]


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


class EmbeddingRoutes:
    """The three embedding routes of one app: `handlers` maps a POST path to its ASGI handler.

    Args:
        models: name -> loaded model; `batchers` the running batcher of each (filled by the app's lifespan).
        limits: the request limits (`Limits`).
        api_key: the key requests must carry, or None.
        observe: called with (route, status, seconds) after every request, for metrics.
        default_model: the model a TEI request that names none gets (TEI's clients cannot name one); None: the
            only model, or a 400 naming them when there are several.
    """

    def __init__(
        self,
        models: dict[str, EmbeddingModel],
        batchers: dict[str, Batcher],
        limits: Limits,
        api_key: str | None,
        observe: Callable[[str, int, float], None],
        default_model: str | None = None,
    ) -> None:
        from ..errors import require

        self.orjson = require("orjson", "serve")
        self.models, self.batchers, self.limits, self.api_key, self.observe = models, batchers, limits, api_key, observe
        self.default_model = default_model
        self.active = 0  # requests between their first byte and their answer, on every route here
        self.handlers: dict[str, Handler] = {
            "/v1/embeddings": self._handler("/v1/embeddings", self.openai),
            "/embed": self._handler("/embed", self.tei),
            "/": self._handler("/", self.tei),  # TEI's root route (huggingface_hub posts here)
        }

    def _handler(self, route: str, answer: Callable[[dict[str, Any], Callable[[], bool]], Answer]) -> Handler:
        async def handle(
            scope: dict[str, Any], receive: Callable[..., Awaitable[Any]], send: Callable[..., Awaitable[Any]]
        ) -> None:
            self.active += 1
            try:
                await self._answer(route, answer, scope, receive, send)
            finally:
                self.active -= 1

        return handle

    async def _answer(
        self,
        route: str,
        answer: Callable[[dict[str, Any], Callable[[], bool]], Answer],
        scope: dict[str, Any],
        receive: Callable[..., Awaitable[Any]],
        send: Callable[..., Awaitable[Any]],
    ) -> None:
        """One request on an embedding route: read, check, queue, answer (always JSON, never a trace)."""
        start = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = JSON_HEADERS
        try:
            if self.api_key is not None:
                check_key(_header(scope, b"authorization"), self.api_key)
            body = parse_body(await read_body(scope, receive, self.limits.max_request_bytes))
            gone = _disconnect_probe(receive)
            future, field, allow = answer(body, gone or _never)
            try:
                content = await (future if gone else _unless_disconnected(future, receive))
            except TooLong as error:
                raise ApiError(
                    413,
                    f"{field}[{error.index}] has {error.tokens} tokens, over the model's limit of {error.limit} "
                    f"({error.over} of {error.count} inputs are over it); shorten them, or send {allow} to cut them",
                ) from None
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if future.cancelled() and task is not None and not task.cancelling():
                    raise ClientGone() from None  # the batcher dropped it: the client went away
                raise
            status = 200
        except ApiError as error:
            status, content = error.status, self.orjson.dumps(error_body(error))
            headers = JSON_HEADERS + [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
        except ClientGone:
            self.observe(route, 499, time.perf_counter() - start)  # nginx's "client closed request"
            return
        except Exception as error:  # a bug: log it for the operator, give the client one line, no trace
            log.exception("jina-onnx: %s failed", route)
            status = 500
            content = self.orjson.dumps(
                {
                    "error": {
                        "message": f"internal error: {type(error).__name__}",
                        "type": "server_error",
                        "code": 500,
                    }
                }
            )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(content)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": content})
        self.observe(route, status, time.perf_counter() - start)

    def resolve(self, name: Any, default: str | None = None) -> str:
        if name is None:
            if default is not None:
                return default
            if len(self.models) > 1:
                raise ApiError(400, f"'model' is required: this server has {', '.join(self.models)}")
            return next(iter(self.models))
        if not isinstance(name, str):
            raise ApiError(400, f"'model' must be a string, got {json_type(name)}")
        if name not in self.models:
            raise ApiError(404, f"model {name!r} is not served here; served: {', '.join(self.models)}")
        return name

    def openai(self, body: dict[str, Any], gone: Callable[[], bool]) -> Answer:
        check_fields(body, OPENAI_FIELDS, "input")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise ApiError(400, f"encoding_format {encoding!r} is not supported: use 'float' or 'base64'")
        name = self.resolve(body.get("model"))
        model = self.models[name]
        check_dimensions(body.get("dimensions"), name, model.dim)
        precision = output_precision(body)
        orjson = self.orjson

        def finish(rows: Any, tokens: int) -> bytes:  # in the inference thread
            vectors = model.postprocess(rows, None, precision)
            little = vectors.dtype.newbyteorder("<")  # base64: the values' bytes, little-endian, as OpenAI's float32
            data = [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": base64.b64encode(v.astype(little).tobytes()).decode("ascii")
                    if encoding == "base64"
                    else v,
                }
                for i, v in enumerate(vectors)
            ]
            # orjson writes numpy float32 rows directly, 15x faster than floats through json.dumps (2.2 ms for a
            # 16 x 312 response), and each value reads back as the same float32.
            return orjson.dumps(
                {
                    "object": "list",
                    "data": data,
                    "model": name,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                },
                option=orjson.OPT_SERIALIZE_NUMPY,
            )

        return self._submit(name, body, "input", finish, gone)

    def tei(self, body: dict[str, Any], gone: Callable[[], bool]) -> Answer:
        check_fields(body, TEI_FIELDS, "inputs")
        if body.get("prompt_name") is not None:
            raise ApiError(400, "prompt_name is not supported: these models take no prompts")
        normalize = body.get("normalize", True)  # TEI's default
        if not isinstance(normalize, bool):
            raise ApiError(400, f"'normalize' must be true or false, got {json_type(normalize)}")
        precision = output_precision(body)
        name = self.resolve(body.get("model"), self.default_model)
        model = self.models[name]
        orjson = self.orjson

        def finish(rows: Any, tokens: int) -> bytes:  # in the inference thread
            return orjson.dumps(model.postprocess(rows, normalize, precision), option=orjson.OPT_SERIALIZE_NUMPY)

        return self._submit(name, body, "inputs", finish, gone)

    def _submit(
        self, name: str, body: dict[str, Any], field: str, finish: Callable[[Any, int], bytes], gone: Callable[[], bool]
    ) -> Answer:
        texts = texts_of(body.get(field), field)
        if len(texts) > self.limits.max_inputs_per_request:
            raise ApiError(
                413,
                f"{len(texts)} inputs is over the limit of {self.limits.max_inputs_per_request} per request "
                "(--max-inputs-per-request); split the request",
            )
        how = truncation(body)
        try:
            future = self.batchers[name].submit(texts, truncation=how, finish=finish, gone=gone)
        except Overloaded as error:
            raise ApiError(429, f"server busy: {error}; retry later", {"Retry-After": "1"}) from None
        # Said in the words of the field that refused: a request that sent "truncation": "refuse" is told to
        # change that, not to send a `truncate` it never sent.
        allow = '"truncation": "right"' if body.get("truncation") == "refuse" else '"truncate": true'
        return future, field, allow


def _never() -> bool:
    return False


def _disconnect_probe(receive: Callable[..., Awaitable[Any]]) -> Callable[[], bool] | None:
    """A check of whether the client has gone, without a task per request, where the server offers one.

    uvicorn's `receive` is a method of its request cycle, whose `disconnected` flag its protocol sets when the
    connection drops (uvicorn is pinned by the `serve` extra, and a test covers this). The batcher asks before
    it runs a request, so a gone client's texts never run. Elsewhere: None, and a watcher task instead.
    """
    cycle = getattr(receive, "__self__", None)
    if isinstance(getattr(cycle, "disconnected", None), bool):
        return lambda: cycle.disconnected  # type: ignore[union-attr]
    return None


def _header(scope: Mapping[str, Any], name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


async def read_body(scope: Mapping[str, Any], receive: Callable[..., Awaitable[Any]], limit: int) -> bytes:
    """The body, with the size limit enforced as it streams in (a Content-Length over it is refused unread)."""
    declared = _header(scope, b"content-length")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {int(declared)} bytes is over the limit of {limit} (--max-request-bytes)")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes (--max-request-bytes)")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _unless_disconnected(answer: asyncio.Future[bytes], receive: Callable[..., Awaitable[Any]]) -> bytes:
    """Await `answer`, cancelling it (so its request leaves the batch queue) if the client disconnects first.

    One watcher task per request, and no `asyncio.wait`: the pair of tasks it replaced cost 7% of the event
    loop's time at one text per request."""
    watcher = asyncio.ensure_future(receive())

    def on_message(done: asyncio.Future[Any]) -> None:
        if not done.cancelled() and done.exception() is None and done.result()["type"] == "http.disconnect":
            answer.cancel()

    watcher.add_done_callback(on_message)
    try:
        return await answer
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if answer.cancelled() and task is not None and not task.cancelling():
            raise ClientGone() from None
        raise
    finally:
        watcher.cancel()
