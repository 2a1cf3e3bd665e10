"""Dynamic batching: texts from concurrent requests share ONNX Runtime calls, bounded by a token budget.

One `Batcher` per served model. Requests queue their (already tokenized) texts; a single asyncio task
takes queued requests in arrival order until the next one would pass `max_batch_tokens`, runs them as
one `embed_token_ids` call in an inference thread (off the event loop), and hands every request exactly
its own rows. While a batch runs, new requests queue up and form the next one, so under load batches
grow by themselves; `max_batch_wait_ms` can also hold an idle device back to let a batch fill.

Up to `in_flight` batches run at once, each in its own thread on the same session (ONNX Runtime and our
OpenVINO session are safe to call from several threads). On a CPU that the event loop shares, two
single-threaded batches beat one batch on two threads: every operator of a multi-threaded run waits for
its slowest thread, and a thread the event loop has preempted stalls the whole run (t int8, 2 cores,
concurrency 64: 1,545 vs 1,235 texts/s). A batch of many texts that finds several threads free runs in
that many parts at once, so a lone large request still gets every core.

No request can starve: the first queued request is always taken, even when it alone is over the budget
(the runtime then cuts it into budget-sized calls, and a single text longer than the budget runs alone).

Example:
    >>> batcher = Batcher(model, max_batch_tokens=8192)  # doctest: +SKIP
    >>> batcher.start()  # inside a running event loop  # doctest: +SKIP
    >>> vectors = await batcher.embed(model.tokenizer.tokenize(["a text"]).ids)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..model import EmbeddingModel
from ..similarity import FloatArray

CPU_SUB_BATCH = 8  # texts per ONNX call within a batch on a CPU; see Batcher.__init__


class Overloaded(Exception):
    """The queue is full: the caller should answer 429 and have the client retry later."""


@dataclass(eq=False)
class _Job:
    ids: list[list[int]]
    tokens: int
    future: asyncio.Future[FloatArray]
    cancelled: bool = field(default=False)


class Batcher:
    """Collects concurrent requests for one model into batches; see the module docstring.

    Args:
        model: the loaded model.
        max_batch_tokens: at most this many (unpadded) tokens per batch, except a lone request over it.
        max_batch_wait_ms: how long an idle device waits for a batch to fill (0: run at once).
        max_queue: requests allowed to wait; one more raises `Overloaded`.
        on_batch: called with (texts, tokens) of every batch run, for metrics.
        in_flight: batches allowed to run at once (give the model's session threads // in_flight each).
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
    ) -> None:
        if in_flight < 1:
            raise ValueError(f"in_flight={in_flight!r} must be at least 1")
        self.model = model
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_wait_s = max_batch_wait_ms / 1000
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._jobs: collections.deque[_Job] = collections.deque()
        self.in_flight = in_flight
        # Texts from different requests arrive in no length order, so one ONNX call over a whole batch pads
        # every text to the longest: on STS sentences that ran t at 0.70x of globally sorted `encode`. On a
        # CPU the batch is sorted by length and run in calls of 8 (0.95x; 16: 0.90x); a GPU wants one call.
        self.sub_batch = CPU_SUB_BATCH if model.device == "cpu" else None
        self._executor = ThreadPoolExecutor(in_flight, thread_name_prefix=f"jina-onnx-infer-{model.name}")
        self._running: set[asyncio.Task[None]] = set()
        self._busy = 0  # inference threads taken by running batches
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Requests waiting for a batch (not counting the one running)."""
        return sum(1 for job in self._jobs if not job.cancelled)

    def start(self) -> None:
        """Start the batching task on the running event loop."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.model.name}")

    async def stop(self) -> None:
        """Stop batching; requests still queued get an error (the server drains in-flight ones first)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._running:  # batches already handed to a thread finish and answer their requests
            await asyncio.wait(self._running)
        for job in self._jobs:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._executor.shutdown(wait=True)

    async def embed(self, ids: list[list[int]]) -> FloatArray:
        """Queue one request's token ids; returns its (len(ids), dim) embeddings, in order.

        Raises Overloaded when `max_queue` requests are already waiting. Cancelling the awaiting task
        (the client went away) drops the request from the queue.
        """
        if self._wake is None:
            raise RuntimeError("Batcher.start() was not called")
        if self.depth >= self.max_queue:
            raise Overloaded(f"{self.depth} requests are waiting (--max-queue {self.max_queue})")
        job = _Job(ids, sum(map(len, ids)), asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._wake.set()
        try:
            return await job.future
        except asyncio.CancelledError:
            job.cancelled = True  # skipped when the next batch is formed; if it is running, its rows are dropped
            raise

    async def _run(self) -> None:
        assert self._wake is not None  # set by start()
        loop = asyncio.get_running_loop()
        while True:
            self._drop_cancelled()
            if not self._jobs or self._busy >= self.in_flight:
                self._wake.clear()  # set by a new request and by a finished batch
                await self._wake.wait()
                continue
            await self._let_batch_fill(loop)
            batch = self._take()
            if batch:
                texts = sum(len(job.ids) for job in batch)
                # A batch of several calls' worth with no other batch to share the CPU with runs in parts,
                # one per free slot: one request of many texts gets every core, not one thread.
                parts = min(self.in_flight - self._busy, -(-texts // self.sub_batch)) if self.sub_batch else 1
                self._busy += parts
                task = loop.create_task(self._run_batch(loop, batch, parts))
                self._running.add(task)
                task.add_done_callback(functools.partial(self._batch_done, parts=parts))

    def _batch_done(self, task: asyncio.Task[None], parts: int) -> None:
        self._running.discard(task)
        self._busy -= parts
        self._wake.set()  # type: ignore[union-attr]  # a free slot: form the next batch

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Job], parts: int) -> None:
        ids = [seq for job in batch for seq in job.ids]
        bounds = np.linspace(0, len(ids), parts + 1).astype(int)
        calls = [
            functools.partial(
                self.model.embed_token_ids, ids[a:b], token_budget=self.max_batch_tokens, batch_size=self.sub_batch
            )
            for a, b in zip(bounds[:-1], bounds[1:])
        ]
        try:
            outs = await asyncio.gather(*(loop.run_in_executor(self._executor, call) for call in calls))
        except Exception as error:  # handed to every request of the batch; the batcher goes on
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        out = outs[0] if parts == 1 else np.concatenate(outs)
        if self.on_batch is not None:
            self.on_batch(len(ids), sum(job.tokens for job in batch))
        start = 0
        for job in batch:
            rows = out[start : start + len(job.ids)]  # (n_job, dim): exactly this request's rows
            start += len(job.ids)
            if not job.future.done():
                job.future.set_result(np.ascontiguousarray(rows))

    async def _let_batch_fill(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.max_batch_wait_s <= 0:
            return
        deadline = loop.time() + self.max_batch_wait_s
        while sum(job.tokens for job in self._jobs) < self.max_batch_tokens:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wake.clear()  # type: ignore[union-attr]
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)  # type: ignore[union-attr]
            except asyncio.TimeoutError:
                return

    def _take(self) -> list[_Job]:
        """Queued jobs in arrival order while they fit the budget; always at least the first."""
        batch: list[_Job] = []
        tokens = 0
        while self._jobs:
            job = self._jobs[0]
            if job.cancelled:
                self._jobs.popleft()
                continue
            if batch and tokens + job.tokens > self.max_batch_tokens:
                break
            batch.append(self._jobs.popleft())
            tokens += job.tokens
        return batch

    def _drop_cancelled(self) -> None:
        if any(job.cancelled for job in self._jobs):
            self._jobs = collections.deque(job for job in self._jobs if not job.cancelled)
