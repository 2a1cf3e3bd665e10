"""The precision of the vectors `encode` returns (not of the model): float32, float16, int8, uint8, binary,
ubinary.

int8 and uint8 map each dimension's calibration range to 256 buckets, binary and ubinary keep one bit per
dimension (> 0), packed eight to a byte (dim / 8 bytes per vector; binary shifted by -128 into int8). They are
the formulas of sentence-transformers' `quantize_embeddings`, so the results are bit-identical to it given the
same ranges (a test checks every precision). The ranges are measured at export on 600 STS-dev sentences (pairs
0-299; quality is judged on the other pairs) and stored in the manifest, for raw and for L2-normalized vectors:
nothing is downloaded at run time.

Example:
    >>> import numpy as np
    >>> quantize(np.array([[0.5, -0.25, 0.0, 1.0, -1.0, 0.1, 0.2, -0.3]], np.float32), "ubinary").tolist()
    [[150]]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import ArtifactError, InputError

OUTPUT_PRECISIONS = ("float32", "float16", "int8", "uint8", "binary", "ubinary")
# numpy dtype of each precision's values (binary and ubinary: packed bits, dim / 8 per vector).
DTYPES = {
    "float32": np.float32,
    "float16": np.float16,
    "int8": np.int8,
    "uint8": np.uint8,
    "binary": np.int8,
    "ubinary": np.uint8,
}


def check_precision(precision: str) -> None:
    if precision not in OUTPUT_PRECISIONS:
        raise InputError(f"output_precision={precision!r} is not one of {', '.join(OUTPUT_PRECISIONS)}")


def quantize(embeddings: npt.NDArray[np.floating], precision: str, ranges: Any = None) -> np.ndarray:
    """`embeddings` (n, dim) float in `precision`; int8 and uint8 need `ranges` (2, dim): minimums, maximums."""
    check_precision(precision)
    if precision == "float32":
        return embeddings.astype(np.float32, copy=False)
    if precision == "float16":
        return embeddings.astype(np.float16)
    if precision in ("int8", "uint8"):
        if ranges is None:
            raise ArtifactError(
                f"output_precision={precision!r} needs the calibration ranges that exports since this version store "
                "in the manifest; re-export the model (float16, binary and ubinary need none)"
            )
        starts = ranges[0, :]
        steps = (ranges[1, :] - ranges[0, :]) / 255
        steps = np.where(steps == 0, 1, steps)
        buckets = np.clip(np.floor((embeddings - starts) / steps), 0, 255)
        return buckets.astype(np.uint8) if precision == "uint8" else (buckets - 128).astype(np.int8)
    packed = np.packbits(embeddings > 0, axis=-1).reshape(embeddings.shape[0], -1)
    return (packed - 128).astype(np.int8) if precision == "binary" else packed


def calibration_ranges(embeddings: npt.NDArray[np.floating]) -> list[list[float]]:
    """[[minimum per dimension], [maximum per dimension]] of calibration embeddings, as the manifest stores them."""
    return [np.min(embeddings, axis=0).astype(float).tolist(), np.max(embeddings, axis=0).astype(float).tolist()]
