"""The fixed probe set every variant is checked on, at export and by `jina-onnx verify`."""

from __future__ import annotations

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


def parity(reference: np.ndarray, candidate: np.ndarray, reference_name: str) -> Parity:
    """Max abs diff and cosines between two (n, dim) arrays."""
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    cosines = (ref * cand).sum(1) / np.maximum(np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1), 1e-12)
    return Parity(
        max_abs_diff=float(np.abs(ref - cand).max()),
        mean_cosine=float(cosines.mean()),
        min_cosine=float(cosines.min()),
        probe_count=int(len(ref)),
        reference=reference_name,
    )
