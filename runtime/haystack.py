"""jina-onnx as Haystack embedders (the `haystack` extra): `JinaOnnxTextEmbedder` for queries and
`JinaOnnxDocumentEmbedder` for documents, in-process, no server.

They follow Haystack's own embedders: `warm_up()` loads the model (a pipeline calls it), `prefix` / `suffix`
wrap each text, the document embedder embeds `meta_fields_to_embed` joined with `embedding_separator` before the
content, and both serialize to and from a dict (`to_dict`, `from_dict`).

Example:
    >>> from jina_onnx.haystack import JinaOnnxTextEmbedder
    >>> embedder = JinaOnnxTextEmbedder("jina-embedding-t-en-v1", model_kwargs={"device": "cpu"})
    >>> embedder.warm_up()
    >>> len(embedder.run("how is the weather today")["embedding"])
    312
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import InputTypeError, require
from .lazy import LazyModel

require("haystack", "haystack")
from haystack import Document, component, default_from_dict, default_to_dict  # noqa: E402
from haystack.core.serialization import allow_deserialization_module  # noqa: E402

# Haystack rebuilds pipelines only from modules on its allowlist. This one's components take strings and
# dicts, nothing executable: once imported, pipelines that use them load (`Pipeline.loads(text)`); to load
# one before importing this module, pass `allowed_modules=["jina_onnx.haystack"]`.
allow_deserialization_module(__name__)


class _Embedder:
    """What both components share: the settings, the lazily loaded model and `encode`."""

    def __init__(
        self,
        model: str,
        *,
        prefix: str = "",
        suffix: str = "",
        batch_size: int | None = None,
        normalize: bool | None = None,
        truncation: str = "right",
        progress_bar: bool = False,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.prefix, self.suffix = str(model), prefix, suffix
        self.batch_size, self.normalize, self.truncation = batch_size, normalize, truncation
        self.progress_bar, self.model_kwargs = progress_bar, dict(model_kwargs or {})
        self._lazy = LazyModel(self.model, self.model_kwargs)

    def warm_up(self) -> None:
        """Load the model now (Haystack pipelines call this before the first run)."""
        self._lazy.get()

    def _encode(self, texts: list[str]) -> list[list[float]]:
        vectors = self._lazy.get().encode(
            [self.prefix + t + self.suffix for t in texts],
            batch_size=self.batch_size,
            normalize=self.normalize,
            truncation=self.truncation,
            show_progress=self.progress_bar,
        )
        return vectors.astype(float).tolist()

    def _settings(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "prefix": self.prefix,
            "suffix": self.suffix,
            "batch_size": self.batch_size,
            "normalize": self.normalize,
            "truncation": self.truncation,
            "progress_bar": self.progress_bar,
            "model_kwargs": self.model_kwargs,
        }


@component
class JinaOnnxTextEmbedder(_Embedder):
    """Embeds one text (a query): `run(text)` -> {"embedding": list[float]}."""

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, **self._settings())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JinaOnnxTextEmbedder:
        return default_from_dict(cls, data)

    @component.output_types(embedding=list[float])
    def run(self, text: str) -> dict[str, Any]:
        if not isinstance(text, str):
            raise InputTypeError(
                f"JinaOnnxTextEmbedder takes one string, got {type(text).__name__}; use "
                "JinaOnnxDocumentEmbedder for a list of Documents"
            )
        return {"embedding": self._encode([text])[0]}


@component
class JinaOnnxDocumentEmbedder(_Embedder):
    """Embeds Documents: `run(documents)` -> {"documents": the same documents with `embedding` set}."""

    def __init__(
        self,
        model: str,
        *,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        **settings: Any,
    ) -> None:
        _Embedder.__init__(self, model, **settings)  # @component rebuilds the class: no zero-argument super()
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.embedding_separator = embedding_separator

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            **self._settings(),
            meta_fields_to_embed=self.meta_fields_to_embed,
            embedding_separator=self.embedding_separator,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JinaOnnxDocumentEmbedder:
        return default_from_dict(cls, data)

    def text_of(self, document: Document) -> str:
        """The text embedded for a document: the meta fields to embed, then the content, joined as Haystack's
        own embedders join them (prefix and suffix are added in `encode`)."""
        meta = [
            str(document.meta[key])
            for key in self.meta_fields_to_embed
            if key in document.meta and document.meta[key] is not None
        ]
        return self.embedding_separator.join([*meta, document.content or ""])

    @component.output_types(documents=list[Document])
    def run(self, documents: list[Document]) -> dict[str, Any]:
        if not isinstance(documents, list) or not all(isinstance(d, Document) for d in documents):
            raise InputTypeError(
                "JinaOnnxDocumentEmbedder takes a list of Documents; use JinaOnnxTextEmbedder for a string"
            )
        vectors = self._encode([self.text_of(d) for d in documents]) if documents else []
        return {"documents": [dataclasses.replace(d, embedding=v) for d, v in zip(documents, vectors)]}
