"""Cutting tokenized texts into batches: sorted by length, bounded by a token budget, padded to buckets."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IndexArray = npt.NDArray[np.intp]

DEFAULT_TOKEN_BUDGET = 8192  # batch x padded length; 16 passages of 512 tokens, or 32 texts of 256
# Device-sized defaults (batch_size, token_budget) when the caller passes None. A CPU gains nothing past
# batch 32. A GPU wants big batches: 256 texts of 128 tokens (docs/gpu.md) need 32,768
# tokens, and the default 8,192 cut them to 64 texts (-5 to -10%); 65,536 also fits 256 texts of 256
# tokens or 128 full 512-token passages, about 1 GB of attention scores for l in fp16.
DEVICE_DEFAULTS = {"cpu": (32, DEFAULT_TOKEN_BUDGET), "cuda": (256, 65536)}


WINDOW_TEXTS = 4096  # the least texts in a full window (tests lower it to check many windows on few texts)


def sort_windows(count: int, batch_size: int, ramp: bool = False) -> list[tuple[int, int]]:
    """(start, end) of the windows `encode` tokenizes and length-sorts one at a time.

    Windows let the tokenization of window k+1 overlap the device's work on window k. The first one is
    two batches, so the device starts early; the rest are large (16 batches, at least 4,096 texts),
    because sorting within small windows pads more: windows of 1,024 cost 4.5% on STS sentences
    (t int8, CPU) against one sort of all 3,000.

    `ramp` (host workers feeding a GPU) starts with one batch and grows the windows from there instead: each is
    one batch plus a quarter of all texts before it, up to the cap. A window can only be planned once all
    of it is tokenized, so after a first window of two batches the device would wait for 4,096 texts; with
    the ramp, a host 1.25x faster than the device has each window ready before the device finishes the ones
    before it (docs/architecture.md, "The host path"). Smaller windows pad more: 8-12% more padded tokens
    than the flat windows on STS sentences for calls of 2,048-8,192 texts at batch 256 (the later windows
    of a long call are full size), none on texts of one length.

    Example:
        >>> sort_windows(10_000, 32)
        [(0, 64), (64, 4160), (4160, 8256), (8256, 10000)]
        >>> sort_windows(4_000, 256, ramp=True)
        [(0, 256), (256, 576), (576, 976), (976, 1476), (1476, 2101), (2101, 2882), (2882, 3858), (3858, 4000)]
    """
    first, size = (1 if ramp else 2) * batch_size, max(WINDOW_TEXTS, 16 * batch_size)
    bounds = [0, min(first, count)]
    while bounds[-1] < count:
        step = min(size, first + bounds[-1] // 4) if ramp else size
        bounds.append(min(bounds[-1] + step, count))
    return [(a, b) for a, b in zip(bounds, bounds[1:])]


def bucket_length(length: int, limit: int) -> int:
    """Round a padded length up to one of a few sizes, so ONNX Runtime sees few distinct shapes.

    Its CPU arena and memory patterns grow with every new input shape (docs/architecture.md, pitfall 4b).
    Multiples of 8 up to 64 tokens, then of 32: at most 1/8 extra tokens on short inputs, and
    22 lengths in all up to 512. Never beyond `limit` (BERT has no positions past 512).

    Example:
        >>> [bucket_length(n, 512) for n in (3, 9, 64, 65, 500)]
        [8, 16, 64, 96, 512]
    """
    step = 8 if length <= 64 else 32
    return min(max(step, -(-length // step) * step), max(limit, length))


def plan_batches(lengths: npt.NDArray[np.int64], batch_size: int, token_budget: int, limit: int) -> list[IndexArray]:
    """Indices of each batch: longest texts first, each batch at most `batch_size` texts and at most
    `token_budget` padded tokens (a single text longer than the budget still gets its own batch).

    A batch also ends where the next text would need less than half its padded width: otherwise a long
    text pulls short ones into its padding (in a window of 64 STS sentences with one 400-token passage,
    18 sentences were padded to 416 tokens: 14% more work over the whole input, measured on t int8).

    Example:
        >>> [b.tolist() for b in plan_batches(np.array([5, 500, 7, 300]), batch_size=32, token_budget=1024, limit=512)]
        [[1, 3], [2, 0]]
    """
    order = np.argsort(-lengths, kind="stable")  # longest first: the first text of a batch sets its width
    widths = bucket_lengths(lengths[order], limit)  # non-increasing
    # Searching the negated widths (non-decreasing) finds the first text under half a batch's width in
    # O(log n), so planning costs per batch, not per text (it runs while the host workers wait on the GIL).
    rising = -widths
    batches: list[IndexArray] = []
    start, count = 0, len(order)
    while start < count:
        width = int(widths[start])
        end = min(start + max(1, min(batch_size, token_budget // width)), count)
        # the first text that needs at most half the width ends the batch
        short = int(np.searchsorted(rising, -(width // 2), side="left"))
        short = min(max(short, start + 1), end)
        batches.append(order[start:short])
        start = short
    return batches


def bucket_lengths(lengths: npt.NDArray[np.int64], limit: int) -> npt.NDArray[np.int64]:
    """`bucket_length` of every entry at once.

    Example:
        >>> bucket_lengths(np.array([3, 9, 64, 65, 500]), 512).tolist()
        [8, 16, 64, 96, 512]
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    step = np.where(lengths <= 64, 8, 32)
    return np.minimum(np.maximum(step, -(-lengths // step) * step), np.maximum(limit, lengths))
