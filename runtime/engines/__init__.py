"""The engine boundary: what `EmbeddingModel` needs from whatever runs the graph.

An engine takes one padded batch (numpy arrays named after the graph's inputs) and returns float32:
pooled `(batch, dim)` when the graph pools, else token-level `(batch, seq, dim)` for numpy pooling.
`place` is the host-side half of a call (the copy to the device), kept apart so the host path can do it on
its worker threads while the device runs the previous batch.

`open_engine` opens one ONNX file on the engine a load plan names; it is the only place that asks which engine.
`SessionEngine` adapts an ONNX Runtime `InferenceSession` (CPU, or CUDA with I/O binding) or an
`OpenVINOSession`, which offers the same `run`/`get_inputs`/`get_outputs`. Anything else with these
members can stand in, as the host-path benchmark's stand-in device does.

Example:
    >>> import numpy as np
    >>> class Zeros:  # a near-free engine for a 4-dim model
    ...     input_names, pooled, pads_lone_text = ("input_ids", "attention_mask"), True, True
    ...     def place(self, feed): return feed
    ...     def run(self, feed): return np.zeros((len(feed["input_ids"]), 4), np.float32)
    >>> Zeros().run({"input_ids": np.zeros((3, 8), np.int64)}).shape
    (3, 4)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import InputError, require
from ..similarity import FloatArray

KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
POOLED_OUTPUT = "sentence_embedding"  # graphs from jina-onnx pool inside the graph


class Engine(Protocol):
    """Runs prepared batches. `EmbeddingModel` holds one and never asks which kind it is."""

    input_names: tuple[str, ...]  # the graph's inputs, in its order; a subset of KNOWN_INPUTS
    pooled: bool  # True: `run` returns (batch, dim); False: (batch, seq, dim), pooled in numpy
    pads_lone_text: bool  # pad a call's only text to a width bucket too (engines that compile per shape)
    concurrent_batches: bool  # several batches at once, each on its share of the cores, beat one on all (serve)

    def place(self, feed: dict[str, np.ndarray]) -> dict[str, Any]:
        """The batch's inputs where `run` wants them (the device); may run on another thread."""
        ...

    def run(self, feed: dict[str, Any]) -> FloatArray:
        """The graph's output for one placed batch, as a float32 array the caller owns."""
        ...


class SessionEngine:
    """An ONNX Runtime or OpenVINO session behind the `Engine` protocol.

    With `io_binding` (the default on CUDA) inputs are copied to the GPU in `place` and only the pooled
    output is copied back, so nothing else crosses the bus.
    """

    def __init__(
        self,
        session: Any,
        *,
        device: str = "cpu",
        device_id: int = 0,
        io_binding: bool | None = None,
        pads_lone_text: bool = False,
        concurrent_batches: bool = False,
    ) -> None:
        self.session = session
        self.concurrent_batches = concurrent_batches
        self.device = device
        self.device_id = device_id
        self.io_binding = (device == "cuda") if io_binding is None else io_binding
        self.pads_lone_text = pads_lone_text
        self.input_names = tuple(i.name for i in session.get_inputs())
        outputs = {o.name: o for o in session.get_outputs()}
        # A third-party graph without a pooling head: its first output is token-level, pooled in numpy.
        self.output = POOLED_OUTPUT if POOLED_OUTPUT in outputs else next(iter(outputs))
        self.pooled = self.output == POOLED_OUTPUT
        self.width = outputs[self.output].shape[-1]  # an int, or None / a name where the graph leaves it open

    def place(self, feed: dict[str, np.ndarray]) -> dict[str, Any]:
        if not self.io_binding:
            return feed
        ort = require("onnxruntime", "cpu")
        return {
            name: ort.OrtValue.ortvalue_from_numpy(array, self.device, self.device_id) for name, array in feed.items()
        }

    def run(self, feed: dict[str, Any]) -> FloatArray:
        if not self.io_binding:
            (result,) = self.session.run([self.output], feed)
            return result
        binding = self.session.io_binding()
        for name, value in feed.items():
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(self.output, self.device, self.device_id)
        self.session.run_with_iobinding(binding)
        (result,) = binding.copy_outputs_to_cpu()
        return result


def open_engine(
    path: Path,
    sha256: str,
    engine: str,
    device: str,
    *,
    precision: str,
    threads: int | None,
    device_id: int = 0,
    allow_spinning: bool = True,
    io_binding: bool | None = None,
) -> SessionEngine:
    """`path` loaded on `engine` ("onnxruntime" or "openvino") and `device`, in `precision`'s arithmetic.

    Example:
        >>> engine = open_engine(Path("model.onnx"), sha, "onnxruntime", "cpu", precision="fp32", threads=2)  # doctest: +SKIP
        >>> engine.pooled  # doctest: +SKIP
        True
    """
    # Checked here, for both engines: OpenVINO took threads=0 and ran (`encode --threads 0` with backend auto).
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise InputError(f"threads={threads!r} must be a positive integer (leave it unset for the physical cores)")
    if engine == "openvino":
        from .openvino import OpenVINOSession

        # OpenVINO compiles kernels for every shape it meets: lone texts are padded to buckets too. It cuts
        # each batch across its streams itself, so a server runs one batch at a time.
        return SessionEngine(OpenVINOSession(path, precision, threads, sha256), pads_lone_text=True)
    from .onnxruntime import create_session

    session = create_session(path, device, threads, device_id, precision, allow_spinning)
    # On a CPU, two single-threaded-ish batches at once keep the cores busier than one batch on all of them
    # while a server's event loop shares the machine (serve/loading.py).
    return SessionEngine(
        session,
        device=device,
        device_id=device_id,
        io_binding=io_binding,
        concurrent_batches=concurrent_batches(engine, device),
    )


def engine_version(engine: str) -> str:
    """The installed version of an engine ("onnxruntime" or "openvino"), which measured speeds depend on."""
    if engine == "openvino":
        from .openvino import version

        return f"openvino {version()}"
    return f"onnxruntime {require('onnxruntime', 'cpu').__version__}"


def concurrent_batches(engine: str, device: str) -> bool:
    """Whether an engine gains from several batches at once, each on its share of the cores (ONNX Runtime on a
    CPU beside a server's event loop); OpenVINO cuts one batch across its streams itself, and a GPU runs one."""
    return engine == "onnxruntime" and device == "cpu"
