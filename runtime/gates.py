"""The accuracy each variant must reach against PyTorch fp32 on the probe set."""

from __future__ import annotations

from dataclasses import dataclass

from .manifest import Parity, Precision


@dataclass(frozen=True)
class Gate:
    """The accuracy a variant must reach against PyTorch fp32 on the probe set to be written."""

    max_abs_diff: float | None = None
    mean_cosine: float | None = None
    min_cosine: float | None = None
    batch_invariance: float | None = None  # min cosine of a text alone vs inside a batch (probe.batch_invariance)

    def describe(self) -> str:
        parts = []
        if self.max_abs_diff is not None:
            parts.append(f"max_abs_diff <= {self.max_abs_diff:g}")
        if self.mean_cosine is not None:
            parts.append(f"mean_cosine >= {self.mean_cosine:g}")
        if self.min_cosine is not None:
            parts.append(f"min_cosine >= {self.min_cosine:g}")
        if self.batch_invariance is not None:
            parts.append(f"batch_invariance >= {self.batch_invariance:g}")
        return " and ".join(parts)

    def failures(self, parity: Parity) -> list[str]:
        """What the measured parity misses; empty when it passes. `not >=` also catches NaN."""
        missed = []
        if self.max_abs_diff is not None and not parity.max_abs_diff <= self.max_abs_diff:
            missed.append(f"max_abs_diff {parity.max_abs_diff:.3g} > {self.max_abs_diff:g}")
        if self.mean_cosine is not None and not parity.mean_cosine >= self.mean_cosine:
            missed.append(f"mean_cosine {parity.mean_cosine:.6f} < {self.mean_cosine:g}")
        if self.min_cosine is not None and not parity.min_cosine >= self.min_cosine:
            missed.append(f"min_cosine {parity.min_cosine:.6f} < {self.min_cosine:g}")
        if self.batch_invariance is not None:
            measured = parity.batch_invariance
            if measured is None:
                missed.append("batch_invariance not measured")
            elif not measured >= self.batch_invariance:
                missed.append(f"batch_invariance {measured:.6f} < {self.batch_invariance:g}")
        return missed


GATES = {
    Precision.FP32: Gate(max_abs_diff=1e-4),
    Precision.FP32_OPT: Gate(max_abs_diff=1e-4),
    Precision.FP16: Gate(mean_cosine=0.9995, min_cosine=0.999),
    # A text's int8 vector must not move with its batch neighbours (alone vs in a batch, cosine >= 0.999).
    Precision.INT8: Gate(mean_cosine=0.99, batch_invariance=0.999),
}
