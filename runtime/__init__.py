"""jina-onnx: Jina Embeddings v1 on ONNX Runtime, without PyTorch.

Example:
    >>> from jina_onnx import build_model, encode, cos_sim
    >>> model = build_model("jina-embedding-t-en-v1")
    >>> a, b = encode(model=model, data=["how is the weather today", "What is the current weather like today?"])
    >>> -1.0 <= cos_sim(a, b) <= 1.0
    True

This module imports numpy only; onnxruntime and tokenizers load when a model is built, and
torch, transformers and optimum never (they belong to `jina_onnx.export`).
"""

from __future__ import annotations

from .build import build_model
from .errors import (
    ArtifactError,
    DeviceError,
    ExportError,
    InputError,
    InputTooLongError,
    InputTypeError,
    JinaOnnxError,
    MissingDependencyError,
    ModelNotFoundError,
)
from .model import EmbeddingModel, TruncationWarning, encode
from .registry import ModelSpec, list_models
from .similarity import cos_sim

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "DeviceError",
    "EmbeddingModel",
    "ExportError",
    "InputError",
    "InputTooLongError",
    "InputTypeError",
    "JinaOnnxError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "ModelSpec",
    "TruncationWarning",
    "build_model",
    "cos_sim",
    "encode",
    "list_models",
]
