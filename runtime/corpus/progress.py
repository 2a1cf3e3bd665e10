"""Watching a long job that reports nothing by itself (a Ray Data write): progress shown, a stall refused.

Ray waits without a word for resources that never free up and for tasks that never finish (docs/architecture.md,
pitfall 9). `watch` runs the work on a thread, polls a progress count (rows written so far), reports it, and
when the count has not moved for `stall_timeout` seconds stops the work (`on_stall`) and raises a
`CorpusError` that says so, instead of waiting forever.

Example:
    >>> import itertools, time
    >>> counter = itertools.count()
    >>> watch(lambda: time.sleep(0.05) or "done", lambda: next(counter), stall_timeout=5, poll=0.01)
    'done'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .job import CorpusError

T = TypeVar("T")


def watch(
    work: Callable[[], T],
    progress: Callable[[], int],
    *,
    stall_timeout: float,
    poll: float = 2.0,
    on_stall: Callable[[], Any] = lambda: None,
    report: Callable[[int, float], Any] = lambda done, s: None,
    what: str = "the job",
) -> T:
    """`work()`'s result, or CorpusError once `progress()` has not grown for `stall_timeout` seconds.

    `report(done, seconds)` is called after every poll; `on_stall()` runs before the error is raised (to
    cancel the work, which keeps running on its daemon thread otherwise).
    """
    if stall_timeout <= 0:
        raise CorpusError(f"stall_timeout={stall_timeout!r} must be positive (seconds without progress)")
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # handed to the calling thread, which raises it
            outcome["error"] = error

    thread = threading.Thread(target=run, name="jina-onnx-watched", daemon=True)
    started = last_change = time.monotonic()
    thread.start()
    last = _safe(progress, 0)
    while True:
        thread.join(poll)
        now = time.monotonic()
        done = _safe(progress, last)
        if done != last:
            last, last_change = done, now
        report(done, now - started)
        if not thread.is_alive():
            break
        if now - last_change >= stall_timeout:
            on_stall()
            raise CorpusError(
                f"{what} made no progress for {stall_timeout:g} s ({done:,} rows written so far): the cluster may "
                "lack the resources it waits for (check `ray status`), or a worker hangs; raise --stall-timeout "
                "if one batch legitimately takes longer"
            )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _safe(progress: Callable[[], int], fallback: int) -> int:
    """A progress reading; a failed one (a file half-written at that moment) counts as no change."""
    try:
        return int(progress())
    except Exception:
        return fallback
