"""OpenVINO as a second CPU engine: runs an artifact's `model.onnx` with OpenVINO's CPU plugin.

OpenVINO reads the ONNX file directly and, with the precision hint `bf16`, runs its matrix work on the bf16
units of modern Intel CPUs (AMX, AVX512-BF16): on the 2-core Xeon of the development machine that was 2.7x
(t) to 4x (s) faster than its own f32 on batches of 32 x 128 tokens. It cannot load our ONNX Runtime variants
(`model.cpu-opt.onnx` uses ONNX Runtime's fused contrib ops, `model.int8.onnx` its dynamic quantization), so
only the plain fp32 graph runs here.

`OpenVINOSession` offers the slice of `onnxruntime.InferenceSession` that `EmbeddingModel` uses
(`get_inputs`, `get_outputs`, `run`), so the tokenizer path, batching and pooling are the same code.

Example:
    >>> session = OpenVINOSession(Path("model.onnx"), "bf16", threads=2)  # doctest: +SKIP
    >>> [i.name for i in session.get_inputs()]  # doctest: +SKIP
    ['input_ids', 'attention_mask', 'token_type_ids']
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import ArtifactError, require
from .session import physical_cores

# jina-onnx precision -> OpenVINO's INFERENCE_PRECISION_HINT.
HINTS = {"fp32": "f32", "bf16": "bf16"}
EXTRA = "openvino"


@dataclass(frozen=True)
class Port:
    """A graph input or output as `onnxruntime.NodeArg` shows it: a name and a shape (None where dynamic)."""

    name: str
    shape: tuple[int | None, ...]


def openvino() -> Any:
    """The openvino module, or MissingDependencyError naming the extra."""
    return require("openvino", EXTRA)


def installed() -> bool:
    """Whether OpenVINO can be imported here (without importing it when it is absent)."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


@lru_cache(maxsize=1)
def core() -> Any:
    """One OpenVINO Core per process: it holds the plugins and their caches."""
    return openvino().Core()


def version() -> str:
    return str(openvino().__version__).split("-")[0]


def cpu_name() -> str:
    """The CPU as OpenVINO names it, e.g. 'Intel(R) Xeon(R) Platinum 8488C'."""
    return str(core().get_property("CPU", "FULL_DEVICE_NAME"))


def cpu_has_bf16() -> bool:
    """Whether OpenVINO finds bf16 units on this CPU (AMX or AVX512-BF16); without them a bf16 hint would
    be emulated or ignored, so jina-onnx refuses it."""
    return "BF16" in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVINOSession:
    """An OpenVINO compiled model behind the `InferenceSession` calls `EmbeddingModel` makes.

    Thread-safe: each calling thread gets its own infer request (an OpenVINO request holds its input and
    output buffers, so two threads must never share one).
    """

    def __init__(self, path: Path, precision: str, threads: int | None):
        if precision not in HINTS:
            raise ValueError(f"OpenVINO runs fp32 or bf16, not {precision!r}")
        config = {
            "INFERENCE_PRECISION_HINT": HINTS[precision],
            "INFERENCE_NUM_THREADS": threads or physical_cores(),
            # One stream, all threads on one request: the latency setting, which is also what batches of
            # a single caller want. Several threads calling at once queue on that stream.
            "PERFORMANCE_HINT": "LATENCY",
        }
        try:
            self._compiled = core().compile_model(str(path), "CPU", config)
        except RuntimeError as e:  # OpenVINO raises RuntimeError for unreadable or unsupported graphs
            raise ArtifactError(f"{path}: OpenVINO cannot load it ({str(e).strip().splitlines()[-1]}); "
                                "re-export the model, or use backend='onnxruntime'") from e
        self.path = path
        self.precision = precision
        self._local = threading.local()

    def get_inputs(self) -> list[Port]:
        return [_port(p) for p in self._compiled.inputs]

    def get_outputs(self) -> list[Port]:
        return [_port(p) for p in self._compiled.outputs]

    def run(self, output_names: list[str], feed: dict[str, Any]) -> list[Any]:
        """Like `InferenceSession.run`: the named outputs as numpy arrays the caller owns."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        # Shared buffers avoid copying every output (token_embeddings is batch x length x dim); only the
        # outputs asked for are copied out, before the request can be reused.
        results = request.infer(feed, share_inputs=True, share_outputs=True)
        return [results[name].copy() for name in output_names]

    def get_providers(self) -> list[str]:
        return [f"OpenVINO CPU ({self.precision})"]


def _port(port: Any) -> Port:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return Port(port.any_name, shape)
