"""Each runner of the suite in its own process, driven over a pipe.

Why: with every runtime of a model in one process, l's long-text pass drove that process past 24 GB on the
2-core development machine and the kernel killed the whole suite. In separate processes each runtime's
allocator returns its memory when its process ends, the parent holds no model at all, and a runner that
crashes (killed for memory, a segfault in a native library) is reported as failed while the others go on.

The worker times each call itself, so the pipe's cost (pickling texts and vectors) is not in the numbers.
Rounds still alternate runner by runner, as in one process.

Example:
    >>> runner = RemoteRunner(RunnerSpec("jina-onnx", "int8", "t", "cpu", 2))  # doctest: +SKIP
    >>> vectors = runner(["a text"], 32, None); runner.seconds  # doctest: +SKIP
    >>> runner.close()  # doctest: +SKIP
"""

from __future__ import annotations

import multiprocessing
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from .runners import RunnerSpec, Unsupported, load, prepare

CALL_TIMEOUT_S = 3600.0  # one call of a full run's longest section on 2 cores takes minutes, never an hour


class RunnerDied(RuntimeError):
    """The runner's process ended while it was working (killed for memory, a crash in native code)."""


class RemoteRunner:
    """An `Encode` whose runner lives in a child process; `seconds` is the worker-side time of the last call.

    Raises `Unsupported` (from the child's `prepare`) or RuntimeError at construction when the runner
    cannot load; `raw` exists only for runners that offer a raw-session ceiling (jina-onnx).
    """

    def __init__(self, spec: RunnerSpec, target: Callable[[Any, str], None] | None = None) -> None:
        self.spec = spec
        self.seconds = 0.0
        context = multiprocessing.get_context("spawn")  # a clean interpreter: no inherited threads or models
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=target or _serve, args=(child, spec.to_json()), daemon=True, name=f"runner {spec.label}"
        )
        self._process.start()
        child.close()
        reply = self._receive()
        if reply[0] == "unsupported":
            self.close()
            raise Unsupported(reply[1], cached=reply[2])
        if reply[0] == "error":
            self.close()
            raise RuntimeError(reply[1])
        if reply[1]:  # the worker's runner has a raw-session ceiling
            self.raw = self._raw

    @classmethod
    def prepare(cls, spec: RunnerSpec) -> None:
        """Run `runners.prepare` (exports, sentence-transformers' ONNX export) in a process of its own that
        then ends: an export holds the PyTorch model and its traces (13.7 GB for l), which must not stay
        resident in the runner that is timed next. Raises Unsupported or RuntimeError as the runner would."""
        cls(spec, target=_prepare_only).close()

    def __call__(self, texts: list[str], batch_size: int, token_budget: int | None = None) -> np.ndarray:
        out, self.seconds = self._ask(("encode", texts, batch_size, token_budget))
        return out

    def _raw(self, texts: list[str], batch_size: int, token_budget: int | None = None) -> Callable[[], None]:
        key = self._ask(("raw_prepare", texts, batch_size, token_budget))

        def run() -> None:
            run.seconds = self._ask(("raw_run", key))  # type: ignore[attr-defined]

        return run

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
            self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=10)
        self._conn.close()

    def _ask(self, message: tuple) -> Any:
        try:
            self._conn.send(message)
        except (BrokenPipeError, OSError) as e:
            raise self._died() from e
        reply = self._receive()
        if reply[0] == "error":
            raise RuntimeError(reply[1])
        return reply[1]

    def _receive(self) -> tuple:
        if not self._conn.poll(CALL_TIMEOUT_S):
            self._process.kill()
            raise RunnerDied(f"{self.spec.label}: no answer in {CALL_TIMEOUT_S:.0f} s; its process was stopped")
        try:
            return self._conn.recv()
        except (EOFError, OSError) as e:
            raise self._died() from e

    def _died(self) -> RunnerDied:
        self._process.join(timeout=10)
        code = self._process.exitcode
        why = f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        hint = " (SIGKILL: most often the kernel's out-of-memory killer)" if code == -signal.SIGKILL else ""
        return RunnerDied(f"{self.spec.label}: its process died ({why}){hint}")


def _prepare_only(conn: Any, spec_json: str) -> None:
    spec = RunnerSpec.from_json(spec_json)
    try:
        prepare(spec)
    except Unsupported as error:
        conn.send(("unsupported", str(error), error.cached))
        return
    except Exception as error:
        conn.send(("error", _describe(error)))
        return
    conn.send(("ready", False))
    try:
        conn.recv()  # the parent's "stop"
    except EOFError:
        pass


def _serve(conn: Any, spec_json: str) -> None:
    """The child: load one runner, then answer the parent's calls until told to stop."""
    import warnings

    warnings.simplefilter("ignore")  # third-party notices would interleave with the parent's progress lines
    spec = RunnerSpec.from_json(spec_json)
    try:
        prepare(spec)  # already done by RemoteRunner.prepare in the suite: only checks that the files are there
        encode = load(spec)
    except Unsupported as error:
        conn.send(("unsupported", str(error), error.cached))
        return
    except Exception as error:  # reported by the parent as a failed runner
        conn.send(("error", _describe(error)))
        return
    conn.send(("ready", hasattr(encode, "raw")))
    prepared: dict[int, Callable[[], None]] = {}
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the parent is gone
            return
        try:
            if message[0] == "stop":
                return
            if message[0] == "encode":
                start = time.perf_counter()
                out = encode(*message[1:])
                conn.send(("ok", (out, time.perf_counter() - start)))
            elif message[0] == "raw_prepare":
                prepared.clear()  # one section's inputs at a time
                key = len(prepared)
                prepared[key] = encode.raw(*message[1:])  # type: ignore[attr-defined]
                conn.send(("ok", key))
            elif message[0] == "raw_run":
                start = time.perf_counter()
                prepared[message[1]]()
                conn.send(("ok", time.perf_counter() - start))
        except Exception as error:
            conn.send(("error", _describe(error)))


def _describe(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    where = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    place = f" ({where.filename.rsplit('/', 1)[-1]}:{where.lineno})" if where else ""
    return f"{type(error).__name__}: {lines[0] if lines else ''}{place}"
