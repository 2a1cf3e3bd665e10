"""The exceptions jina-onnx raises.

One base class, so callers can catch everything from this package at once; each subclass
carries the CLI exit code it maps to (click-style), so `jina-onnx` never prints a traceback
for a user error.
"""

from __future__ import annotations

from typing import Any


class JinaOnnxError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code = 1


class ModelNotFoundError(JinaOnnxError):
    """A model name or path does not lead to an exported artifact or a checkpoint."""


class ArtifactError(JinaOnnxError):
    """An exported artifact is missing a file, is corrupted, or disagrees with its manifest."""


class MissingDependencyError(JinaOnnxError, ImportError):
    """An optional package is not installed; the message names the `pip install` that fixes it."""


class InputError(JinaOnnxError, ValueError):
    """A caller passed a value the API cannot use (wrong value, not wrong type)."""


class InputTooLongError(InputError):
    """An input has more tokens than the model takes and the caller asked for no truncation."""

    def __init__(self, message: str, *, index: int, tokens: int, limit: int) -> None:
        super().__init__(message)
        self.index, self.tokens, self.limit = index, tokens, limit


class InputTypeError(JinaOnnxError, TypeError):
    """A caller passed a value of the wrong type."""


class DeviceError(JinaOnnxError):
    """The requested execution device (CUDA) is not available."""


class ExportError(JinaOnnxError):
    """The export stage refused or failed to write an artifact."""


class ParityError(ExportError):
    """The exported graph does not reproduce PyTorch within the tolerance."""


class HubError(ExportError):
    """Downloading from the Hugging Face Hub failed.

    `reason` says why: "network" (the hub can't be reached), "repo" (no such repository, or
    it is private) or "revision" (the repository has no such branch, tag or commit).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        # A distinct code for "no network" lets scripts fall back to an offline checkpoint.
        return 3 if self.reason == "network" else 1


def require(module: str, extra: str) -> Any:
    """Import an optional module or raise MissingDependencyError naming the extra to install.

    Example:
        >>> ort = require("onnxruntime", "cpu")
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        hint = (
            'pip install "jina-onnx[cpu]"  (or "jina-onnx[gpu]" for CUDA; never both)'
            if extra in ("cpu", "gpu")
            else f'pip install "jina-onnx[{extra}]"'
        )
        raise MissingDependencyError(f"{module} is not installed: {hint}") from e
