"""jina-onnx as a LlamaIndex `BaseEmbedding` (the `llama-index` extra): in-process, no server.

Example:
    >>> from jina_onnx.llama_index import JinaOnnxEmbedding
    >>> embedding = JinaOnnxEmbedding("jina-embedding-t-en-v1", device="cpu", embed_batch_size=16)
    >>> len(embedding.get_text_embedding("how is the weather today"))
    312
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from .errors import require
from .lazy import LazyModel

require("llama_index.core", "llama-index")
from llama_index.core.base.embeddings.base import DEFAULT_EMBED_BATCH_SIZE, BaseEmbedding  # noqa: E402
from pydantic import Field, PrivateAttr  # noqa: E402  (pydantic comes with llama-index-core)


class JinaOnnxEmbedding(BaseEmbedding):
    """LlamaIndex embeddings backed by `jina_onnx.build_model`, sync and async.

    Args:
        model: a model name (in $JINA_ONNX_HOME) or an artifact directory.
        embed_batch_size: texts LlamaIndex hands over per call (its batching, honoured as it is).
        normalize: L2-normalize; None follows the model.
        truncation: "right", "left" or "refuse", as in `encode`.
        **options: passed to `build_model` (device, precision, backend, threads, ...); loaded on first use.
    """

    normalize: bool | None = Field(default=None, description="L2-normalize; None follows the model")
    truncation: str = Field(default="right", description="right, left or refuse, as in jina_onnx's encode")
    options: dict[str, Any] = Field(default_factory=dict, description="build_model options")
    _lazy: LazyModel = PrivateAttr()

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        embed_batch_size: int = DEFAULT_EMBED_BATCH_SIZE,
        normalize: bool | None = None,
        truncation: str = "right",
        **options: Any,
    ) -> None:
        fields: dict[str, Any] = {
            "model_name": str(model),
            "embed_batch_size": embed_batch_size,
            "normalize": normalize,
            "truncation": truncation,
            "options": options,
        }
        super().__init__(**fields)
        self._lazy = LazyModel(str(model), options)

    @classmethod
    def class_name(cls) -> str:
        return "JinaOnnxEmbedding"

    def _embed(self, texts: list[str]) -> list[list[float]]:
        vectors = self._lazy.get().encode(texts, normalize=self.normalize, truncation=self.truncation)
        return vectors.astype(float).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts)

    # The async forms run `encode` on a thread: the event loop stays free while the model works.
    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)
