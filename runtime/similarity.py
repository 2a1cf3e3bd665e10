"""Cosine similarity and L2 normalization on numpy arrays."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .errors import InputError, InputTypeError

FloatArray = npt.NDArray[np.float32]


def l2_normalize(embeddings: npt.NDArray[np.floating], eps: float = 1e-12) -> FloatArray:
    """Scale each row to unit length; an all-zero row stays zero (as torch's F.normalize does)."""
    norms = np.linalg.norm(embeddings, axis=-1, keepdims=True)
    return (embeddings / np.maximum(norms, eps)).astype(np.float32, copy=False)


def cos_sim(a: npt.ArrayLike, b: npt.ArrayLike) -> float | FloatArray:
    """Cosine similarity: two 1-D vectors give a float, 2-D inputs give the (n, m) matrix.

    A 1-D vector paired with a 2-D array is treated as a single row, giving shape (1, m) or (n, 1).

    Example:
        >>> round(cos_sim([1.0, 0.0], [1.0, 1.0]), 4)
        0.7071
        >>> cos_sim([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0]]).shape
        (2, 1)
    """
    left, right = _as_matrix(a, "a"), _as_matrix(b, "b")
    if left.shape[1] != right.shape[1]:
        raise InputError(
            f"cos_sim: a has dimension {left.shape[1]} but b has {right.shape[1]}; "
            "compare embeddings from the same model"
        )
    matrix = l2_normalize(left) @ l2_normalize(right).T  # (n, m)
    if np.ndim(a) == 1 and np.ndim(b) == 1:
        return float(matrix[0, 0])
    return matrix.astype(np.float32, copy=False)


def _as_matrix(x: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InputTypeError(f"cos_sim: {name} must be a numeric 1-D or 2-D array ({e})") from e
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise InputError(f"cos_sim: {name} has shape {np.shape(x)}; pass a 1-D vector or a 2-D (n, dim) array")
    return arr
