"""OpenVINO as a second CPU engine: runs an artifact's fp32 graph with OpenVINO's CPU plugin.

OpenVINO reads the ONNX file directly and, with the precision hint `bf16`, runs its matrix work on the bf16
units of modern Intel CPUs (AMX, AVX512-BF16): on the 2-core Xeon of the development machine that was 2.7x
(t) to 4x (s) faster than its own f32 on batches of 32 x 128 tokens. The graph it runs is the fused
`onnx/model_cpu_fused.onnx` where the artifact has one (OpenVINO reads ONNX Runtime's Attention, LayerNorm and Gelu
fusions), else `onnx/model.onnx` (`checks.openvino_variant`): the fused graph was 2-9% faster in bf16 (MiniLM
+7%, s +9%, b +5%, t +3%; same-run A/Bs through `encode`, 2026-11-27) with the same fp32 outputs. The int8
graphs stay with ONNX Runtime: OpenVINO runs the weight-only one (MiniLM's) no faster than bf16 (253 vs 264
texts/s) and not the dynamic-quantization ones.

`OpenVINOSession` offers the slice of `onnxruntime.InferenceSession` that `EmbeddingModel` uses
(`get_inputs`, `get_outputs`, `run`), so the tokenizer path, batching and pooling are the same code.

Example:
    >>> session = OpenVINOSession(Path("onnx/model_cpu_fused.onnx"), "bf16", threads=2)  # doctest: +SKIP
    >>> session.streams  # doctest: +SKIP
    2
    >>> [i.name for i in session.get_inputs()]  # doctest: +SKIP
    ['input_ids', 'attention_mask', 'token_type_ids']
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ArtifactError, require
from ..machine import physical_cores
from ..manifest import sha256_file

# jina-onnx precision -> OpenVINO's INFERENCE_PRECISION_HINT.
HINTS = {"fp32": "f32", "bf16": "bf16"}
# A batch is cut across streams only when each slice keeps at least this many rows. A single row is
# faster on one request with every thread (MiniLM: 3.0 ms, vs 3.3 ms on a 1-thread stream); 4 is a
# judgement, not a measured crossover.
MIN_ROWS_PER_STREAM = 4
EXTRA = "openvino"


class UnreadableGraph(ArtifactError):
    """OpenVINO cannot compile the ONNX file (an op it does not know, a malformed graph)."""


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

    A batch of at least `2 * MIN_ROWS_PER_STREAM` rows is cut into one slice per stream and the slices run
    at once, each stream on its share of the threads (OpenVINO's throughput setting). On the 2-core Xeon,
    at 32 x 128 tokens, the bare session gained 11% (t) and 17% (MiniLM) over one stream running the whole
    batch on both threads, and `encode` 12% and 2% (same-run A/Bs on a noisy machine), with the same rows:
    each row's arithmetic does not depend on its neighbours. Smaller
    batches (a query, a server's lone request) run whole on a second, single-stream compile that puts every
    thread on one request; it is compiled on the first small batch, so bulk jobs never pay for it.

    Thread-safe: each calling thread gets its own infer requests (an OpenVINO request holds its input and
    output buffers, so two threads must never share one).
    """

    def __init__(self, path: Path, precision: str, threads: int | None, sha256: str | None = None):
        if precision not in HINTS:
            raise ValueError(f"OpenVINO runs fp32 or bf16, not {precision!r}")
        self.path = path
        self.precision = precision
        self.threads = threads or physical_cores()
        self.sha256 = sha256  # checked again when the file is read again for the single-stream compile
        self._config = {"INFERENCE_PRECISION_HINT": HINTS[precision], "INFERENCE_NUM_THREADS": self.threads}
        # One stream per core, up to the threads given: OpenVINO's THROUGHPUT hint picks the count.
        self._bulk = self._compile("THROUGHPUT")
        self.streams = int(self._bulk.get_property("NUM_STREAMS"))
        # With one stream the bulk compile already puts every thread on one request.
        self._small: Any = self._bulk if self.streams == 1 else None
        self._compile_lock = threading.Lock()
        self._local = threading.local()
        self._first_inference()

    def _first_inference(self) -> None:
        """One tiny inference in the constructing thread, before any other thread can call.

        OpenVINO's Python binding initializes some C++ statics on first use (the element-type to numpy
        dtype table in `infer`'s input dispatch) while holding the GIL in one thread and waiting for it in
        another: the first `infer` calls of several threads at once deadlocked 1 time in 5 here (OpenVINO
        2026.4, 8 threads). Running that path once here makes it safe.
        """
        # Token 0 with mask 1: valid for every vocabulary and token-type table.
        feed = {
            port.any_name: (np.ones if port.any_name == "attention_mask" else np.zeros)(
                (1, 1), dtype=port.get_element_type().to_dtype()
            )
            for port in self._bulk.inputs
        }
        self._bulk.create_infer_request().infer(feed)

    def _compile(self, hint: str) -> Any:
        # From the file each time rather than a kept `ov.Model`, which would hold a second fp32 copy of
        # the weights for as long as the session lives.
        try:
            return core().compile_model(str(self.path), "CPU", {**self._config, "PERFORMANCE_HINT": hint})
        except RuntimeError as e:  # OpenVINO raises RuntimeError for unreadable or unsupported graphs
            raise self._unreadable(e) from e

    def _unreadable(self, e: RuntimeError) -> UnreadableGraph:
        return UnreadableGraph(
            f"{self.path}: OpenVINO cannot load it ({str(e).strip().splitlines()[-1]}); "
            "re-export the model, or use backend='onnxruntime'"
        )

    def get_inputs(self) -> list[Port]:
        return [_port(p) for p in self._bulk.inputs]

    def get_outputs(self) -> list[Port]:
        return [_port(p) for p in self._bulk.outputs]

    def run(self, output_names: list[str], feed: dict[str, Any]) -> list[Any]:
        """Like `InferenceSession.run`: the named outputs as numpy arrays the caller owns."""
        rows = len(next(iter(feed.values())))
        padded = row_bucket(rows)
        if padded == rows:
            return self._run(output_names, feed)
        return [out[:rows] for out in self._run(output_names, pad_rows(feed, padded))]

    def _run(self, output_names: list[str], feed: dict[str, Any]) -> list[Any]:
        rows = len(next(iter(feed.values())))
        slices = min(self.streams, rows // MIN_ROWS_PER_STREAM)
        if slices < 2:
            return self._run_whole(output_names, feed)
        requests = getattr(self._local, "bulk", None)
        if requests is None:
            requests = self._local.bulk = [self._bulk.create_infer_request() for _ in range(self.streams)]
        bounds = [rows * i // slices for i in range(slices + 1)]
        # Row slices of C-ordered arrays are contiguous views, so the inputs are shared, not copied; they
        # stay referenced here until every request is done.
        parts = [{name: array[lo:hi] for name, array in feed.items()} for lo, hi in pairwise(bounds)]
        started = []
        try:
            for request, part in zip(requests, parts):
                request.start_async(part, share_inputs=True)
                started.append(request)
        finally:
            # Every started request is waited for, even after an error, so none is still busy when this
            # thread calls again.
            errors = [_wait(request) for request in started]
        for error in errors:
            if error is not None:
                raise error
        # concatenate copies the outputs out of the requests' buffers before they can be reused.
        return [np.concatenate([r.get_tensor(name).data for r in requests[:slices]]) for name in output_names]

    def _run_whole(self, output_names: list[str], feed: dict[str, Any]) -> list[Any]:
        request = getattr(self._local, "small", None)
        if request is None:
            with self._compile_lock:
                if self._small is None:
                    if self.sha256 is not None and sha256_file(self.path) != self.sha256:
                        raise ArtifactError(
                            f"{self.path}: changed on disk since it was loaded (sha256 no "
                            "longer matches the manifest); reload the model or re-export"
                        )
                    self._small = self._compile("LATENCY")
            request = self._local.small = self._small.create_infer_request()
        # Shared buffers avoid copying every output; only the outputs asked for are copied out, before
        # the request can be reused.
        results = request.infer(feed, share_inputs=True, share_outputs=True)
        return [results[name].copy() for name in output_names]

    def get_providers(self) -> list[str]:
        return [f"OpenVINO CPU ({self.precision})"]


def row_bucket(rows: int) -> int:
    """The batch size OpenVINO runs for `rows` texts: 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, ...

    OpenVINO's CPU plugin keeps compiled kernels for every input shape it has seen, and gives none back:
    embedding STS sentences and passages of every length in random batches of 1-48 grew RSS by about
    1.3 MB per new (rows, width) shape, steadily for as long as new shapes turned up (t bf16, 2026-11-27;
    its runtime-cache and oneDNN primitive-cache capacities made no difference). Widths already come in
    22 buckets (`batching.bucket_length`); rows padded to these sizes keep the shapes to a few hundred, at
    most a third more rows to compute.

    Example:
        >>> [row_bucket(n) for n in (1, 3, 5, 7, 9, 17, 25, 33)]
        [1, 3, 6, 8, 12, 24, 32, 48]
    """
    size = 1
    while size < rows:
        # 1, 2, 3, 4, 6, 8, 12, ...: powers of two and one and a half times them
        size = size + 1 if size < 2 else (size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3)
    return size


def pad_rows(feed: dict[str, Any], rows: int) -> dict[str, Any]:
    """`feed` with filler rows appended up to `rows`: token 0, and one unmasked position so that mean
    pooling of a filler row divides by 1, not 0. Real rows never attend to other rows, so theirs are
    unchanged; the caller drops the filler rows' outputs."""
    padded = {}
    for name, array in feed.items():
        filler = np.zeros((rows - len(array), *array.shape[1:]), dtype=array.dtype)
        if name == "attention_mask":
            filler[:, 0] = 1
        padded[name] = np.concatenate([array, filler])
    return padded


def _wait(request: Any) -> BaseException | None:
    try:
        request.wait()
    except RuntimeError as e:
        return e
    return None


def _port(port: Any) -> Port:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return Port(port.any_name, shape)
