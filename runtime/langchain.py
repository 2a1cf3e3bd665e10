"""jina-onnx as a LangChain `Embeddings` (the `langchain` extra): in-process, no server.

Example:
    >>> from jina_onnx.langchain import JinaOnnxEmbeddings
    >>> embeddings = JinaOnnxEmbeddings("jina-embedding-t-en-v1", device="cpu")
    >>> len(embeddings.embed_query("how is the weather today"))
    312
"""

from __future__ import annotations

import os
from typing import Any

from .errors import InputError, require
from .lazy import LazyModel

require("langchain_core", "langchain")
from langchain_core.embeddings import Embeddings  # noqa: E402  (after the check that names the extra)

ENV = "JINA_ONNX_MODEL"  # the model when none is passed, as LangChain integrations read their settings


class JinaOnnxEmbeddings(Embeddings):
    """LangChain embeddings backed by `jina_onnx.build_model`.

    Args:
        model: a model name (in $JINA_ONNX_HOME) or an artifact directory; default $JINA_ONNX_MODEL.
        batch_size: texts per call; None: the device's default.
        normalize: L2-normalize; None follows the model.
        truncation: "right", "left" or "refuse", as in `encode`.
        **options: passed to `build_model` (device, precision, backend, threads, ...). The model loads on
            first use, not here.

    The async methods (`aembed_documents`, `aembed_query`) run `encode` on a thread, so they never block the
    event loop.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        batch_size: int | None = None,
        normalize: bool | None = None,
        truncation: str = "right",
        **options: Any,
    ) -> None:
        model = model if model is not None else os.environ.get(ENV)
        if not model:
            raise InputError(f"JinaOnnxEmbeddings needs a model: pass one, or set ${ENV}")
        self.model = str(model)
        self.batch_size, self.normalize, self.truncation = batch_size, normalize, truncation
        self._model = LazyModel(self.model, options)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors = self._model.get().encode(
            texts, batch_size=self.batch_size, normalize=self.normalize, truncation=self.truncation
        )
        return vectors.astype(float).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]
