"""The four Jina Embeddings v1 text models and where their artifacts live on disk."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path


class Architecture(str, Enum):
    """The encoder families the export stage knows how to trace."""

    BERT = "bert"
    T5_ENCODER = "t5-encoder"


@dataclass(frozen=True)
class ModelSpec:
    """Facts about one published model, as its hub repository states them."""

    name: str  # short name, also the artifact directory name: "jina-embedding-t-en-v1"
    hub_id: str  # Hugging Face repository id
    architecture: Architecture
    dim: int  # embedding width = hidden size (mean pooling, no projection)
    layers: int
    params: str  # rounded parameter count, for display
    max_length: int = 512  # tokens, longer input is truncated
    pooling: str = "mean"


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("jina-embedding-t-en-v1", "jinaai/jina-embedding-t-en-v1", Architecture.BERT, 312, 4, "14M"),
    ModelSpec("jina-embedding-s-en-v1", "jinaai/jina-embedding-s-en-v1", Architecture.T5_ENCODER, 512, 6, "35M"),
    ModelSpec("jina-embedding-b-en-v1", "jinaai/jina-embedding-b-en-v1", Architecture.T5_ENCODER, 768, 12, "110M"),
    ModelSpec("jina-embedding-l-en-v1", "jinaai/jina-embedding-l-en-v1", Architecture.T5_ENCODER, 1024, 24, "335M"),
)


def list_models() -> list[ModelSpec]:
    """The models jina-onnx knows by name.

    Example:
        >>> [m.name for m in list_models()][:1]
        ['jina-embedding-t-en-v1']
    """
    return list(MODELS)


def find_spec(name: str) -> ModelSpec | None:
    """The registry entry for a short name, a hub id or a one-letter size (t/s/b/l), else None."""
    for spec in MODELS:
        if name in (spec.name, spec.hub_id, spec.name.split("-")[2]):
            return spec
    return None


def home_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where named artifacts live: `cache_dir`, else $JINA_ONNX_HOME, else ~/.cache/jina-onnx."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("JINA_ONNX_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "jina-onnx"
