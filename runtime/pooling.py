"""Numpy pooling, for graphs that return token embeddings only (third-party ONNX files).

Graphs exported by jina-onnx pool inside the graph, so only (batch, dim) leaves the device.
These functions follow sentence-transformers' Pooling module exactly.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .manifest import Pooling

FloatArray = npt.NDArray[np.float32]


def pool(token_embeddings: FloatArray, attention_mask: npt.NDArray[np.int64], mode: Pooling) -> FloatArray:
    """(batch, seq, dim) token embeddings -> (batch, dim) sentence embeddings."""
    mask = attention_mask[..., None].astype(np.float32)  # (batch, seq, 1)
    if mode is Pooling.MEAN:
        summed = (token_embeddings * mask).sum(axis=1)  # (batch, dim)
        counts = np.maximum(mask.sum(axis=1), 1e-9)  # (batch, 1), as sentence-transformers clamps
        return (summed / counts).astype(np.float32)
    if mode is Pooling.CLS:
        return token_embeddings[:, 0].astype(np.float32)
    if mode is Pooling.MAX:
        return np.where(mask > 0, token_embeddings, -1e9).max(axis=1).astype(np.float32)
    raise ValueError(f"unknown pooling mode {mode!r}")
