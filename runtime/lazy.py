"""A model loaded on first use, once, shared by the threads that ask for it (the framework adapters)."""

from __future__ import annotations

import os
import threading
from typing import Any

from .build import build_model
from .model import EmbeddingModel


class LazyModel:
    """`build_model(name_or_path, **options)` on the first `get()`; later calls return the same model.

    Frameworks build their components eagerly (at import, in pipelines that are serialized and rebuilt):
    loading a model there would cost seconds and memory before anything is embedded.

    Example:
        >>> lazy = LazyModel("jina-embedding-t-en-v1", {"device": "cpu"})
        >>> lazy.loaded
        False
        >>> lazy.get().dim, lazy.loaded
        (312, True)
    """

    def __init__(self, name_or_path: str | os.PathLike[str], options: dict[str, Any]) -> None:
        self.name_or_path, self.options = name_or_path, dict(options)
        self._model: EmbeddingModel | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def get(self) -> EmbeddingModel:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = build_model(self.name_or_path, **self.options)
        return self._model
