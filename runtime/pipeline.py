"""Host/device overlap: run a producer (tokenize, pad, copy inputs) one step ahead of the consumer (the device).

`encode` on CUDA spent most of its time on the host for small models: tokenization, padding and copies ran
while the GPU waited, then the GPU ran while the CPU waited (design.md pitfall 8). The Rust tokenizer and
ONNX Runtime both release the GIL, so one background thread can prepare batch k+1 while the device runs
batch k. The queue is bounded, so memory holds at most `depth` prepared batches beyond the one running.

Example:
    >>> list(prefetch(iter(range(5)), depth=2))
    [0, 1, 2, 3, 4]
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()
_POLL_S = 0.1  # how often a blocked producer checks whether the consumer went away


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield `items` in order while a background thread computes up to `depth` of them ahead.

    An exception in the producer is raised here, after the items produced before it. Closing the
    generator early (break, an error in the consumer) stops the producer and joins it: no thread or
    prepared batch outlives the call.
    """
    if depth < 1:
        raise ValueError(f"depth={depth!r} must be at least 1")
    ready: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as error:  # handed to the consumer, which raises it in its own thread
            put(_Failure(error))

    worker = threading.Thread(target=produce, name="jina-onnx-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()
