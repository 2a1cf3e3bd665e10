"""Dynamic batching: texts from concurrent requests share ONNX Runtime calls, bounded by a token budget.

One `Batcher` per served model. A request queues its raw texts (with how to truncate them and what to make
of its rows); `in_flight` inference threads each take the queued requests in arrival order, as many as fit
`max_batch_tokens`, and run them as one batch. Everything per text happens there, once per batch, off the
event loop: tokenizing (one Rust call for the whole batch), embedding, and each request's `finish` (the
server serializes its response there); the event loop only queues requests and sets their results.
Tokenizing one request at a time on the event loop cost 21% of its time at one text per request (t int8,
concurrency 64, py-spy), mostly waiting for the GIL back from the Rust call; a batch pays that once.

The threads pull: a thread that finishes a batch takes the next one at once. When the event loop formed
batches and handed them out, a thread waited for it between batches (16% of the inference thread's time idle
at one text per request, concurrency 64). While a batch runs, new requests queue up and form the next one, so
under load batches grow by themselves; `max_batch_wait_ms` can also hold an idle device back to let a batch fill.

On a CPU that the event loop shares, several single-threaded batches beat one batch on every thread: every
operator of a multi-threaded run waits for its slowest thread, and a thread the event loop has preempted
stalls the whole run (t int8, 2 cores, concurrency 64: 1,545 vs 1,235 texts/s). When the server has no other
request in progress (`alone`), a batch runs on `lone_model` instead: the same file on every core, so a lone
large request still gets every core, and a lone short one runs on the event loop itself (no thread hand-off).

The budget: a text of n characters has at most n + 2 tokens with these tokenizers' special tokens (a token
covers at least one character), capped at the model's maximum, so batches are formed on that bound without
tokenizing on the event loop; the ONNX calls inside a batch hold the exact budget (`embed_token_ids`).
No request can starve: the first queued request is always taken, even when it alone is over the budget.

Example:
    >>> batcher = Batcher(model, max_batch_tokens=8192)  # doctest: +SKIP
    >>> batcher.start()  # inside a running event loop  # doctest: +SKIP
    >>> vectors = await batcher.embed(["a text"])  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import collections
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..model import EmbeddingModel
from ..similarity import FloatArray

CPU_SUB_BATCH = 8  # texts per ONNX call within a batch on a CPU; see Batcher.__init__
INLINE_TOKENS = 256  # a lone request this short (by the bound below) runs on the event loop: see Batcher._run
SPECIAL_TOKENS = 2  # [CLS] ... [SEP] (BERT) or ... </s> (T5): the most a text gets beyond its characters

# What a request makes of its rows, in the inference thread: (rows (n, dim) float32, tokens embedded) -> result.
Finish = Callable[[FloatArray, int], Any]


class Overloaded(Exception):
    """The queue is full: the caller should answer 429 and have the client retry later."""


class TooLong(Exception):
    """A request that refuses truncation has an input over the model's limit."""

    def __init__(self, index: int, tokens: int, limit: int, over: int, count: int) -> None:
        super().__init__(f"input {index} has {tokens} tokens, over the limit of {limit}")
        self.index, self.tokens, self.limit, self.over, self.count = index, tokens, limit, over, count


@dataclass(eq=False)
class _Job:
    texts: list[str]
    side: str  # where a long text is cut: "right" or "left"
    refuse: bool  # a text over the limit fails the request instead
    finish: Finish | None
    estimate: int  # an upper bound of its tokens (see the module docstring)
    future: asyncio.Future[Any]
    gone: Callable[[], bool]  # whether its client disconnected
    cancelled: bool = field(default=False)
    span: tuple[int, int, int] | None = None  # set in the inference thread: its rows in the batch, its tokens


class Batcher:
    """Collects concurrent requests for one model into batches; see the module docstring.

    Args:
        model: the loaded model.
        max_batch_tokens: at most this many tokens per batch (by the bound above), except a lone request over it.
        max_batch_wait_ms: how long an idle device waits for a batch to fill (0: run at once).
        max_queue: requests allowed to wait; one more raises `Overloaded`.
        on_batch: called with (texts, tokens) of every batch run, for metrics.
        in_flight: batches allowed to run at once (give the model's session threads // in_flight each).
        alone: whether the server has no request in progress but the ones queued here; None: never.
        lone_model: the same variant on every core, for batches run while `alone()` (default: `model`).
    """

    def __init__(
        self,
        model: EmbeddingModel,
        *,
        max_batch_tokens: int,
        max_batch_wait_ms: float = 0.0,
        max_queue: int = 256,
        on_batch: Callable[[int, int], None] | None = None,
        in_flight: int = 1,
        alone: Callable[[], bool] | None = None,
        lone_model: EmbeddingModel | None = None,
    ) -> None:
        if in_flight < 1:
            raise ValueError(f"in_flight={in_flight!r} must be at least 1")
        self.model = model
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_wait_s = max_batch_wait_ms / 1000
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.in_flight = in_flight
        self._alone = alone
        self._lone_model = lone_model or model
        # Texts from different requests arrive in no length order, so one ONNX call over a whole batch pads
        # every text to the longest: on STS sentences that ran t at 0.70x of globally sorted `encode`. On a
        # CPU the batch is sorted by length and run in calls of 8 (0.95x; 16: 0.90x); a GPU wants one call.
        self.sub_batch = CPU_SUB_BATCH if model.device == "cpu" else None
        self._jobs: collections.deque[_Job] = collections.deque()  # guarded by _ready
        self._ready = threading.Condition()
        self._busy = 0  # threads running a batch, guarded by _ready
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def depth(self) -> int:
        """Requests waiting for a batch (not counting the ones running)."""
        return len(self._jobs)

    def start(self) -> None:
        """Start the inference threads; results go back to the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._threads = [
            threading.Thread(target=self._work, name=f"jina-onnx-infer-{self.model.name}_{i}", daemon=True)
            for i in range(self.in_flight)
        ]
        for thread in self._threads:
            thread.start()

    async def stop(self) -> None:
        """Stop batching: batches running finish and answer; requests still queued get an error."""
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
        loop = asyncio.get_running_loop()
        for thread in self._threads:
            await loop.run_in_executor(None, thread.join)
        for job in self._jobs:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._jobs.clear()

    def submit(
        self,
        texts: list[str],
        *,
        truncation: str = "right",
        finish: Finish | None = None,
        gone: Callable[[], bool] = lambda: False,
    ) -> asyncio.Future[Any]:
        """Queue one request's texts; the future gives `finish(rows, tokens)` (default: the rows, float32
        (len(texts), dim), not normalized, in order), or raises `TooLong` (truncation="refuse").

        Raises Overloaded when `max_queue` requests are already waiting. Cancelling the future (the client went
        away) drops the request from the queue; if its batch is running, its result is dropped. `gone()` true
        when a batch is formed does the same (the future is cancelled then).
        """
        if self._loop is None:
            raise RuntimeError("Batcher.start() was not called")
        if self.depth >= self.max_queue:
            raise Overloaded(f"{self.depth} requests are waiting (--max-queue {self.max_queue})")
        limit = self.model.max_length
        estimate = sum(min(len(text) + SPECIAL_TOKENS, limit) for text in texts)
        future = self._loop.create_future()
        job = _Job(
            texts, "left" if truncation == "left" else "right", truncation == "refuse", finish, estimate, future, gone
        )
        future.add_done_callback(functools.partial(_mark_cancelled, job))
        if estimate <= INLINE_TOKENS and self._alone is not None and self.max_batch_wait_s <= 0:
            # Decided after the requests read in the same turn of the event loop have been queued too, so
            # `alone` sees them (deciding here, before they ran, took concurrency 64 from 0.72x to 0.45x).
            self._loop.call_soon(self._inline_or_queue, job)
        else:
            self._queue(job)
        return future

    async def embed(self, texts: list[str], *, truncation: str = "right", finish: Finish | None = None) -> Any:
        """`submit`, awaited. Cancelling the awaiting task (the client went away) drops the request."""
        return await self.submit(texts, truncation=truncation, finish=finish)

    def _queue(self, job: _Job) -> None:
        with self._ready:
            self._jobs.append(job)
            self._ready.notify()

    def _inline_or_queue(self, job: _Job) -> None:
        if job.future.done():
            return
        if not self._jobs and not self._busy and self._alone() and not job.gone():  # type: ignore[misc]
            # The server's only request, and a short one: run it here, on the event loop. Handing it to an
            # inference thread and back costs two thread wake-ups, most of a one-text request's latency over a
            # bare `encode` (t int8, concurrency 1: p50 1.30 ms vs 0.58 ms through the server).
            self._settle([job], self._process([job], self._lone_model))
            return
        self._queue(job)

    def _work(self) -> None:
        """An inference thread: take a batch, run it, hand the results to the event loop; until `stop`."""
        while True:
            with self._ready:
                while not self._jobs and not self._stopping:
                    self._ready.wait()
                if self._stopping:
                    return
                self._let_batch_fill()
                batch, dropped = self._take()
                alone = not self._busy and self._alone is not None and self._alone()
                if batch:
                    self._busy += 1
            if dropped:
                self._loop.call_soon_threadsafe(_cancel_all, dropped)  # type: ignore[union-attr]
            if not batch:
                continue
            try:
                outcomes = self._process(batch, self._lone_model if alone else self.model)
            except BaseException as error:  # handed to every request of the batch; the thread goes on
                outcomes = [(None, error)] * len(batch)
            with self._ready:
                self._busy -= 1
            self._loop.call_soon_threadsafe(self._settle, batch, outcomes)  # type: ignore[union-attr]

    @staticmethod
    def _settle(batch: list[_Job], outcomes: list[tuple[Any, BaseException | None]]) -> None:
        for job, (result, failure) in zip(batch, outcomes):
            if job.future.done():  # cancelled meanwhile: nobody waits for it
                continue
            if failure is None:
                job.future.set_result(result)
            else:
                job.future.set_exception(failure)

    def _process(self, batch: list[_Job], model: EmbeddingModel) -> list[tuple[Any, BaseException | None]]:
        """Tokenize, embed and finish every job of `batch` on `model`; (result, error) per job."""
        ids: list[list[int]] = []
        outcomes: list[tuple[Any, BaseException | None]] = [(None, None)] * len(batch)
        for side in ("right", "left"):
            members = [i for i, job in enumerate(batch) if job.side == side and not job.cancelled]
            if not members:
                continue
            texts = [text for i in members for text in batch[i].texts]
            tokens = model.tokenizer.tokenize(texts, private=side == "right", side=side)
            start = 0
            for i in members:
                job = batch[i]
                job_ids = tokens.ids[start : start + len(job.texts)]
                start += len(job.texts)
                if job.refuse and any(len(seq) >= model.max_length for seq in job_ids):
                    counts = model.tokenizer.count(job.texts)
                    over = np.flatnonzero(counts > model.max_length)
                    if len(over):
                        index = int(over[0])
                        outcomes[i] = (
                            None,
                            TooLong(index, int(counts[index]), model.max_length, len(over), len(counts)),
                        )
                        continue
                job.span = (len(ids), len(ids) + len(job_ids), sum(map(len, job_ids)))
                ids += job_ids
        if not ids:  # every request of the batch was refused or has gone
            return outcomes
        out = model.embed_token_ids(ids, token_budget=self.max_batch_tokens, batch_size=self.sub_batch)
        if self.on_batch is not None:
            self.on_batch(len(ids), sum(job.span[2] for job in batch if job.span is not None))
        for i, job in enumerate(batch):
            if job.span is None:
                continue
            start, end, count = job.span
            rows = out[start:end]  # (n_job, dim): exactly this request's rows
            try:
                outcomes[i] = (job.finish(rows, count) if job.finish else np.array(rows), None)
            except Exception as error:  # handed to this request alone
                outcomes[i] = (None, error)
        return outcomes

    def _let_batch_fill(self) -> None:
        """With the lock held: wait up to `max_batch_wait_ms` for the queue to fill the budget."""
        if self.max_batch_wait_s <= 0:
            return
        deadline = time.monotonic() + self.max_batch_wait_s
        while sum(job.estimate for job in self._jobs) < self.max_batch_tokens and not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._ready.wait(remaining)

    def _take(self) -> tuple[list[_Job], list[_Job]]:
        """With the lock held: queued jobs in arrival order while they fit the budget (always at least the
        first), and the jobs dropped on the way because their client went away."""
        batch: list[_Job] = []
        dropped: list[_Job] = []
        tokens = 0
        while self._jobs:
            job = self._jobs[0]
            if job.cancelled or job.gone():
                dropped.append(self._jobs.popleft())
                continue
            if batch and tokens + job.estimate > self.max_batch_tokens:
                break
            batch.append(self._jobs.popleft())
            tokens += job.estimate
        return batch, dropped


def _cancel_all(jobs: list[_Job]) -> None:
    for job in jobs:
        job.future.cancel()


def _mark_cancelled(job: _Job, future: asyncio.Future[Any]) -> None:
    if future.cancelled():
        job.cancelled = True  # skipped when the next batch is formed; if it is running, its result is dropped
