"""What the server reads from a request, as pure functions: testable without a server or a model.

Every client error becomes an `ApiError` with its status and a one-line message that says how to fix it;
`app.py` turns it into the JSON error body OpenAI's clients expect.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limits:
    """What one client can make the server do; every field is a `jina-onnx serve` option."""

    max_batch_tokens: int | None = None  # per batch; None: the device default (8,192 CPU, 65,536 CUDA)
    max_batch_wait_ms: float = 0.0  # 0: an idle device runs at once (best latency); load still forms batches
    max_queue: int = 256  # waiting requests per model, then 429: 4x the 64 concurrent clients tested
    max_inputs_per_request: int = 2048  # OpenAI's own limit per embeddings request
    max_request_bytes: int = 8 << 20  # 2,048 texts of 512 tokens are about 5 MB of JSON


class ApiError(Exception):
    """An error answered as JSON with a status code and a one-line message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def parse_body(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or ApiError(400) saying what is wrong with it.

    Example:
        >>> parse_body(b'{"input": "a text"}')
        {'input': 'a text'}
        >>> parse_body(b"[1, 2]")
        Traceback (most recent call last):
        ...
        jina_onnx.serve.requests.ApiError: the body must be a JSON object, got a list
    """
    try:
        # orjson parses a typical request several times faster than json; anything it refuses is parsed again
        # by json below, for the same messages (and the same leniency: NaN, big integers) as before.
        data = _orjson_loads(body)
    except ValueError:
        pass
    else:
        if isinstance(data, dict):
            return data
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiError(400, f"request body is not valid UTF-8 (byte {error.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ApiError(400, f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except RecursionError:  # a hostile body of deeply nested arrays: the parser's stack, not our bug
        raise ApiError(400, "malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the body must be a JSON object, got {json_type(data)}")
    return data


def _orjson_loads(body: bytes) -> Any:
    try:
        import orjson
    except ImportError:  # without the serve extra (pure functions in tests): json alone
        raise ValueError("no orjson") from None
    return orjson.loads(body)


def error_body(error: ApiError) -> dict[str, Any]:
    """The JSON body of an error answer, in OpenAI's shape (its clients read `error.message`).

    Example:
        >>> error_body(ApiError(404, "model 'x' is not served here"))
        {'error': {'message': "model 'x' is not served here", 'type': 'not_found_error', 'code': 404}}
    """
    return {"error": {"message": str(error), "type": error_type(error.status), "code": error.status}}


def texts(value: Any, field: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if value is None:
        raise ApiError(400, f"'{field}' is required: a string or a list of strings")
    if not isinstance(value, list):
        raise ApiError(400, f"'{field}' must be a string or a list of strings, got {json_type(value)}")
    if not value:
        raise ApiError(400, f"'{field}' is an empty list; send at least one text")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            if isinstance(item, (int, list)) and not isinstance(item, bool):
                # LangChain's OpenAIEmbeddings sends OpenAI's token ids by default: these models use their own.
                raise ApiError(
                    400,
                    f"token-id inputs are not supported ({field}[{index}] is {json_type(item)}): send text. "
                    "With LangChain's OpenAIEmbeddings, set check_embedding_ctx_length=False",
                )
            raise ApiError(400, f"{field}[{index}] is {json_type(item)}, not a string")
    return value


def truncation(body: dict[str, Any]) -> str:
    """How long inputs are handled: "right", "left" or "refuse" (the words `encode` uses).

    OpenAI's route takes `truncate` (true by default; false refuses) and `truncation` ("right", "left",
    "refuse"); TEI's takes `truncate` and `truncation_direction` ("Right"/"Left", as TEI writes them).

    Example:
        >>> truncation({"truncate": True, "truncation_direction": "Left"})
        'left'
        >>> truncation({"truncate": False})
        'refuse'
    """
    truncate = body.get("truncate", True)
    if not isinstance(truncate, bool):
        raise ApiError(400, f"'truncate' must be true or false, got {json_type(truncate)}")
    side = body.get("truncation", body.get("truncation_direction", "right"))
    if not isinstance(side, str) or side.lower() not in ("right", "left", "refuse"):
        raise ApiError(400, f"truncation {side!r} is not one of right, left, refuse")
    return "refuse" if not truncate else side.lower()


def output_precision(body: dict[str, Any]) -> str:
    """The vectors' type a request asks for with the `output_precision` extension (float32 when absent).

    Example:
        >>> output_precision({"output_precision": "int8"})
        'int8'
    """
    from ..quantize import OUTPUT_PRECISIONS

    precision = body.get("output_precision", "float32")
    if precision not in OUTPUT_PRECISIONS:
        raise ApiError(400, f"output_precision {precision!r} is not one of {', '.join(OUTPUT_PRECISIONS)}")
    return str(precision)


def check_dimensions(dimensions: Any, model: str, dim: int) -> None:
    """OpenAI's `dimensions`: the model's own size is accepted; anything else is refused, with why."""
    if dimensions is not None and not (type(dimensions) is int and dimensions == dim):
        raise ApiError(
            400,
            f"dimensions={dimensions!r} is not supported: {model} returns {dim}-dimensional vectors and was not "
            "trained for shorter ones (no Matryoshka training); omit dimensions or send its size",
        )


def check_fields(body: dict[str, Any], allowed: set[str], required: str | None = None) -> None:
    """ApiError(400) naming the fields of `body` this route does not take (a typo is never ignored silently),
    or the `required` field (the texts) when it is missing.

    Example:
        >>> check_fields({"input": "x", "temperature": 1}, {"input", "model"})
        Traceback (most recent call last):
        ...
        jina_onnx.serve.requests.ApiError: unsupported field(s): temperature
    """
    if required is not None and required not in body:
        sent = ", ".join(sorted(body)) or "no fields"
        raise ApiError(400, f'no "{required}" field: send the texts to embed as "{required}" (the request has {sent})')
    unknown = set(body) - allowed
    if unknown:
        raise ApiError(400, f"unsupported field(s): {', '.join(sorted(unknown))}")


def check_key(authorization: str, api_key: str | None) -> None:
    if api_key is None:
        return
    scheme, _, token = authorization.partition(" ")
    # Constant-time comparison, so response timing does not reveal how much of a guess was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), api_key.encode()):
        raise ApiError(
            401, "missing or wrong API key: send 'Authorization: Bearer <key>'", {"WWW-Authenticate": "Bearer"}
        )


def json_type(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


def error_type(status: int) -> str:
    return {
        401: "authentication_error",
        404: "not_found_error",
        405: "method_not_allowed",
        413: "request_too_large",
        429: "rate_limit_error",
        503: "unavailable",
    }.get(status, "invalid_request_error")
