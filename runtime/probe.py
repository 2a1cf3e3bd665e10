"""The fixed probe set every variant is checked on, at export and by `jina-onnx verify`."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from .manifest import Parity

_SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank while the sun sets. "

# Short, medium, long, over-long (> 512 tokens for every tokenizer here) and non-ASCII texts.
PROBE_TEXTS: tuple[str, ...] = (
    "",
    "hi",
    "how is the weather today",
    "What is the current weather like today?",
    "Ünïcödé façade – naïve café, 日本語のテキスト, emoji 😀🚀, Ελληνικά, العربية, עברית",
    "A man is playing a guitar on stage.  Tabs\tand\nnewlines, UPPER case, numbers 3.14159 and 42!",
    _SENTENCE * 12,  # about 200 tokens
    _SENTENCE * 60,  # about 1,000 tokens: truncated at the model maximum
)


# Neighbours for the batch-invariance check: ordinary sentences, a long one and odd Unicode, as a batch in a
# real corpus would hold.
NEIGHBOURS: tuple[str, ...] = (
    "A woman is slicing an onion.",
    "Three dogs run across a snowy field while their owner watches.",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝔪𝔞𝔱𝔥 ℵ₀ ∑∫∂ ⟨ψ|φ⟩ \u200b zero-width and \u202e bidi marks",
    "ok",
    "Stocks fell sharply on Tuesday after the central bank raised interest rates again. " * 3,
    "<html><body><p>markup &amp; entities &lt;b&gt;</p></body></html>",
)


def batch_invariance(encode: Callable[[list[str]], np.ndarray]) -> float:
    """Min cosine between each probe text embedded alone and the same text inside one batch with all the
    other probe texts and NEIGHBOURS. Dynamic int8 picks activation scales per call, so its vectors move with
    their neighbours; a search index built in batches and queried one text at a time carries that noise.

    Example:
        >>> batch_invariance(lambda texts: model.encode(texts, normalize=False))  # doctest: +SKIP
        0.99999...
    """
    texts = list(PROBE_TEXTS) + list(NEIGHBOURS)
    together = encode(texts).astype(np.float64)
    alone = np.concatenate([encode([text]) for text in texts]).astype(np.float64)
    cosines = (together * alone).sum(1) / np.maximum(
        np.linalg.norm(together, axis=1) * np.linalg.norm(alone, axis=1), 1e-12
    )
    return float(cosines.min())


def probe_parity(
    encode: Callable[[list[str]], np.ndarray], texts: list[str], reference: np.ndarray, reference_name: str
) -> Parity:
    """Parity of `encode` (texts -> un-normalized (n, dim)) with the reference on the probe texts, batch
    invariance included. Warnings are silenced: the probe truncates and repairs on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        candidate = encode(texts)
        invariance = batch_invariance(encode)
    return parity(reference, candidate, reference_name, invariance)


def parity(
    reference: np.ndarray, candidate: np.ndarray, reference_name: str, invariance: float | None = None
) -> Parity:
    """Max abs diff and cosines between two (n, dim) arrays (and the batch invariance, when measured)."""
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    cosines = (ref * cand).sum(1) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1), 1e-12)
    return Parity(
        max_abs_diff=float(np.abs(ref - cand).max()),
        mean_cosine=float(cosines.mean()),
        min_cosine=float(cosines.min()),
        probe_count=int(len(ref)),
        reference=reference_name,
        batch_invariance=invariance,
    )
