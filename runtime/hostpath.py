"""The host side of `encode`: tokenizing and padding, in the calling thread or on worker threads.

`encode` turns each window of texts (`batching.sort_windows`) into a `ChunkStart` and then the window's
batches, longest first. Two ways produce that same stream:

- `serial`: everything in the calling thread, between device calls. The CPU default, where ONNX Runtime
  already uses every core for the graph and a host thread would only take cores from it.
- `parallel`: worker threads, each tokenizing with its own tokenizer copy and padding (and, with I/O
  binding, copying to the GPU) while the calling thread runs the device. Batches come out in the
  serial order, so for the same windows outputs are bit-identical. Padding the current window goes before
  tokenizing later ones (a priority queue), at most `ahead` padded batches wait, and the next windows are
  tokenized while the device works on this one; with windows that ramp up from one batch
  (`sort_windows(ramp=True)`) the device starts after the first batch and does not wait on a whole window.
  The default on CUDA, where the host was the bottleneck (docs/architecture.md, "The host path").

Why own threads rather than the tokenizer library's pool: `encode_batch` of the Rust `tokenizers` runs on
one process-wide rayon pool that scales poorly on many cores (huggingface/tokenizers #1900), and a process
forked after its parent used that pool runs it on one thread without a word (tokenizers >= 0.22.2). The
calls release the GIL, so threads with their own tokenizer objects run in parallel; the workers set
TOKENIZERS_PARALLELISM=false (unless the user set it) so the library's pool does not compete with them.

Example:
    >>> import numpy as np
    >>> from jina_onnx.tokenization import TokenizedBatch
    >>> tokenize = lambda texts: TokenizedBatch([[1] * len(t) for t in texts], truncated=0)
    >>> plan = lambda tokens: [np.arange(len(tokens.ids))]
    >>> prepare = lambda ids, rows, lone: len(ids)
    >>> list(parallel(iter([["a", "bb"], ["ccc"]]), tokenize, plan, prepare, workers=2, slice_size=1))
    [ChunkStart(size=2, truncated=0, repaired=0), 2, ChunkStart(size=1, truncated=0, repaired=0), 1]
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .batching import IndexArray
from .tokenization import IdArray, TokenizedBatch

log = logging.getLogger("jina_onnx")

T = TypeVar("T")
Tokenize = Callable[[list[str]], TokenizedBatch]
Plan = Callable[[TokenizedBatch], list[IndexArray]]
Prepare = Callable[[list[list[int]], IndexArray, bool], T]

MIN_SLICE, SLICE_CHARS = 8, 40_000  # the smallest and longest tokenizing tasks (see _slices)
_PAD, _TOKENIZE, _STOP = 1, 2, 0  # task priorities, lowest first: stop, then padding, then tokenizing


@dataclass(frozen=True)
class ChunkStart:
    """Marks the start of a window in the stream of prepared batches."""

    size: int  # texts in the window
    truncated: int  # of them, longer than the limit and cut
    repaired: int  # of them, holding lone surrogates replaced by U+FFFD


@dataclass(frozen=True)
class PreparedBatch:
    """One batch, tokenized, padded and placed where the engine runs it (`Engine.place`)."""

    rows: IndexArray | None  # positions in the window (in the call, from EmbeddingModel.prepare_batches)
    feed: dict[str, Any]  # graph input name -> (batch, width) numpy array, or a device buffer
    attention_mask: IdArray  # (batch, width); for numpy pooling when the graph has no pooling head

    @property
    def tokens(self) -> int:
        """Padded tokens in the batch (batch x width): the work a device does for it."""
        return int(self.attention_mask.size)


def default_workers(device: str, engine_threads: int) -> int:
    """Host worker threads when the caller does not say: the cores the engine leaves free.

    On CUDA every core but the one that drives the GPU; on CPU the cores beyond the engine's threads
    (none when ONNX Runtime uses them all, the default).

    Example:
        >>> default_workers("cpu", engine_threads=available_cores())
        0
    """
    cores = available_cores()
    if device == "cuda":
        return max(1, cores - 1)
    return max(0, cores - engine_threads)


def available_cores() -> int:
    """Logical CPUs this process may run on (a container's affinity can be smaller than the machine)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def serial(
    chunks: Iterator[list[str]], tokenize: Tokenize, plan: Plan, prepare: Prepare[T]
) -> Generator[ChunkStart | T, None, None]:
    """The host work in the calling thread: per window a ChunkStart, then its batches in plan order."""
    for texts in chunks:
        tokens = tokenize(texts)
        yield ChunkStart(len(texts), tokens.truncated, tokens.repaired)
        for rows in plan(tokens):
            yield prepare([tokens.ids[i] for i in rows], rows, len(texts) == 1)


def parallel(
    chunks: Iterator[list[str]],
    tokenize: Tokenize,
    plan: Plan,
    prepare: Prepare[T],
    *,
    workers: int,
    slice_size: int,
    ahead: int | None = None,
) -> Generator[ChunkStart | T, None, None]:
    """The same stream as `serial`, with the work on `workers` threads.

    `tokenize` runs on the workers, on slices of at most `slice_size` texts (fewer for a small window, so
    every worker gets a share of the first one), and must be safe to call from several threads at once.
    An error is raised where `serial` would raise it: after the batches before it. Closing the generator
    early cancels the queued work and joins the threads.
    """
    if workers < 1:
        raise ValueError(f"workers={workers!r} must be at least 1")
    ahead = max(2, workers) if ahead is None else ahead
    _library_pool_off()
    pool = _Workers(workers)
    current: _Opened[T] | None = None
    following: _Opened[T] | None = None
    try:
        # Two windows are tokenized ahead of the one the device is on: the workers never run dry while
        # the device finishes a window, and pads always go first (their priority), so this costs memory
        # (at most two windows of token ids), not the device's time.
        windows = deque([_Window.start(next(chunks, None), pool, tokenize, workers, slice_size)])
        while windows[-1] is not None and windows[-1].error is None and len(windows) < 2:
            windows.append(_Window.start(_next_or_error(chunks), pool, tokenize, workers, slice_size))

        def open_next() -> _Opened[T] | None:
            window = windows.popleft()
            if window is None:
                return None
            if windows and windows[-1] is not None and windows[-1].error is None:
                windows.append(_Window.start(_next_or_error(chunks), pool, tokenize, workers, slice_size))
            return _Opened(window, window.result(), pool, plan, prepare, ahead)

        current = open_next()
        while current is not None:
            yield current.start
            following = None
            while current.pending:
                ready = current.pending.popleft().result(steal=True)
                current.refill()
                upcoming = windows[0] if windows else None
                if (
                    following is None
                    and current.all_submitted()
                    and upcoming is not None
                    and upcoming.ready()
                    and upcoming.error is None
                ):  # a failed read is raised in its turn, below
                    # Plan the next window and queue its first pads while the device runs this one's last
                    # batches, so the device does not wait for that at the boundary.
                    following = open_next()
                yield ready
            current = following or open_next()
    finally:
        for opened in (current, following):
            if opened is not None:
                opened.cancel()
        pool.close()


class _Opened(Generic[T]):
    """A tokenized window being planned and padded: its ChunkStart, and at most `ahead` pads in flight."""

    def __init__(
        self, window: _Window, tokens: TokenizedBatch, pool: _Workers, plan: Plan, prepare: Prepare[T], ahead: int
    ) -> None:
        self.start = ChunkStart(len(window.texts), tokens.truncated, tokens.repaired)
        self._tokens, self._pool, self._prepare = tokens, pool, prepare
        self._lone = len(window.texts) == 1
        self._batches = iter(plan(tokens))
        self._left = True
        self.pending: deque[_Task[T]] = deque()
        for _ in range(ahead):
            self.refill()

    def refill(self) -> None:
        """Queue the next batch's padding, if there is one."""
        rows = next(self._batches, None) if self._left else None
        if rows is None:
            self._left = False
            return
        self.pending.append(
            self._pool.submit(_PAD, self._prepare, [self._tokens.ids[i] for i in rows], rows, self._lone)
        )

    def all_submitted(self) -> bool:
        return not self._left

    def cancel(self) -> None:
        for task in self.pending:
            task.cancel()


@dataclass
class _Window:
    """A window of texts whose slices are being tokenized on the workers."""

    texts: list[str]
    parts: list[_Task[TokenizedBatch]]
    error: BaseException | None = None  # from reading the window: raised when the stream reaches it

    @classmethod
    def start(
        cls, texts: list[str] | BaseException | None, pool: _Workers, tokenize: Tokenize, workers: int, slice_size: int
    ) -> _Window | None:
        if texts is None:
            return None
        if isinstance(texts, BaseException):
            return cls([], [], texts)
        return cls(
            texts,
            [pool.submit(_TOKENIZE, tokenize, texts[start:end]) for start, end in _slices(texts, workers, slice_size)],
        )

    def ready(self) -> bool:
        """Whether every slice is tokenized (or reading the window failed)."""
        return self.error is not None or all(part.done() for part in self.parts)

    def result(self) -> TokenizedBatch:
        if self.error is not None:
            raise self.error
        parts = [part.result() for part in self.parts]
        if len(parts) == 1:
            return parts[0]
        return TokenizedBatch(
            ids=list(itertools.chain.from_iterable(p.ids for p in parts)),
            truncated=sum(p.truncated for p in parts),
            repaired=sum(p.repaired for p in parts),
        )


def _slices(texts: list[str], workers: int, most: int) -> Iterator[tuple[int, int]]:
    """(start, end) of the tokenizing tasks of a window.

    Every worker gets a share of a small window (the first one: the device waits for all of it), and no
    slice is so long that a batch to pad waits behind it: a slice ends after about 40,000 characters (some
    8,000 tokens: 8 ms on one core) or `most` texts. Below 8 texts a task costs more than its texts; short
    texts go in slices of up to `most`, since the cost of a task (~30 us) would show on 64 of them.
    """
    share = max(MIN_SLICE, min(most, -(-len(texts) // workers)))
    start = chars = 0
    for end, text in enumerate(texts, 1):
        chars += len(text)
        if end - start >= share or (chars >= SLICE_CHARS and end - start >= MIN_SLICE) or end == len(texts):
            yield start, end
            start, chars = end, 0


def _next_or_error(chunks: Iterator[list[str]]) -> list[str] | BaseException | None:
    """The next window, or the error reading it raised (kept until the windows before it are out)."""
    try:
        return next(chunks, None)
    except Exception as error:  # e.g. InputTypeError from a bad item of an encode_iter stream
        return error


class _Task(Generic[T]):
    """One unit of host work. Whoever claims it first runs it: a worker, or (`result(steal=True)`) the
    consumer when it needs the result before any worker got to it. That is for padding, a millisecond the
    consumer would otherwise spend waiting while the workers finish slices of the next window; tokenizing
    is left to the workers, since a third busy thread on their cores slows them all."""

    def __init__(self, fn: Callable[..., T], args: tuple[Any, ...]) -> None:
        self._fn, self._args = fn, args
        self._claim = threading.Lock()
        self._done = threading.Event()
        self._value: T | None = None
        self._error: BaseException | None = None

    def run_if_unclaimed(self) -> None:
        if not self._claim.acquire(blocking=False):
            return  # taken by another thread, or cancelled
        try:
            self._value = self._fn(*self._args)
        except BaseException as error:  # handed to whoever asks for the result
            self._error = error
        finally:
            self._done.set()

    def result(self, steal: bool = False) -> T:
        if steal:
            self.run_if_unclaimed()
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        self._claim.acquire(blocking=False)  # a task claimed here never runs


class _Workers:
    """Threads taking tasks by priority (lower first, first come first served within one)."""

    def __init__(self, count: int) -> None:
        self._tasks: queue.PriorityQueue[tuple[int, int, _Task[Any] | None]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._threads = [
            threading.Thread(target=self._work, name=f"jina-onnx-host-{i}", daemon=True) for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, priority: int, fn: Callable[..., T], *args: Any) -> _Task[T]:
        task = _Task(fn, args)
        self._tasks.put((priority, next(self._order), task))
        return task

    def _work(self) -> None:
        while True:
            _, _, task = self._tasks.get()
            if task is None:
                return
            task.run_if_unclaimed()

    def close(self) -> None:
        """Stop every thread after its current task (queued tasks are dropped) and join them."""
        for _ in self._threads:
            self._tasks.put((_STOP, next(self._order), None))
        for thread in self._threads:
            thread.join()


_pool_off_logged = threading.Event()


def _library_pool_off() -> None:
    """Keep the tokenizer library's own thread pool from competing with the workers (module docstring)."""
    if "TOKENIZERS_PARALLELISM" in os.environ:
        return
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    if not _pool_off_logged.is_set():
        _pool_off_logged.set()
        log.info(
            "jina-onnx: host worker threads tokenize in parallel; set TOKENIZERS_PARALLELISM=false so the "
            "tokenizers library's own pool does not compete with them (set the variable to choose)"
        )
