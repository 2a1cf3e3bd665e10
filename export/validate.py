"""Comparing an exported graph, run through the runtime, against PyTorch on a fixed probe set."""

from __future__ import annotations

from typing import Any

import numpy as np

from jina_onnx.manifest import Parity

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


def torch_embeddings(module: Any, hf_tokenizer: Any, texts: list[str], max_length: int, lowercase: bool,
                     input_names: list[str]) -> np.ndarray:
    """Pooled fp32 embeddings from PyTorch, tokenized the way sentence-transformers does."""
    import torch

    if lowercase:
        texts = [t.lower() for t in texts]
    batch = hf_tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    args = [batch["input_ids"], batch["attention_mask"]]
    if "token_type_ids" in input_names:
        args.append(torch.zeros_like(batch["input_ids"]))
    with torch.no_grad():
        pooled, _ = module(*args)
    return pooled.float().numpy()  # (n, dim)


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
