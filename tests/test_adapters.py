"""The LangChain, LlamaIndex and Haystack adapters: each framework's own standard tests where it has them,
and vectors equal to `encode` within 1e-6, sync and async."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from jina_onnx import build_model
from jina_onnx.langchain import JinaOnnxEmbeddings
from jina_onnx.registry import home_dir

NAME = "jina-embedding-t-en-v1"
TEXTS = ["how is the weather today", "What is the current weather like today?", "", "a third text", "and a fourth"]
OPTIONS = {"device": "cpu", "precision": "fp32"}


@pytest.fixture(scope="module", autouse=True)
def named_model(artifact) -> Path:  # type: ignore[no-untyped-def]
    """The t artifact under its name in $JINA_ONNX_HOME: what a user's `build_model(NAME)` finds."""
    target = home_dir() / NAME
    if not target.exists():
        shutil.copytree(artifact("t"), target)
    return target


@pytest.fixture(scope="module")
def expected(named_model) -> np.ndarray:  # type: ignore[no-untyped-def]
    return build_model(NAME, **OPTIONS).encode(TEXTS)


class _OurEmbeddings:
    """What both of LangChain's standard suites need to know: the class and how to build it."""

    @property
    def embeddings_class(self) -> type[JinaOnnxEmbeddings]:
        return JinaOnnxEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model": NAME, **OPTIONS}


class TestLangChainStandardUnit(_OurEmbeddings, EmbeddingsUnitTests):
    @property
    def init_from_env_params(self) -> tuple[dict, dict, dict]:
        return {"JINA_ONNX_MODEL": NAME}, OPTIONS, {"model": NAME}


class TestLangChainStandardIntegration(_OurEmbeddings, EmbeddingsIntegrationTests):
    pass


def test_langchain_equals_encode_sync_and_async(expected) -> None:
    embeddings = JinaOnnxEmbeddings(NAME, **OPTIONS)
    assert not embeddings._model.loaded  # loads on first use
    np.testing.assert_allclose(embeddings.embed_documents(TEXTS), expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(embeddings.embed_query(TEXTS[1]), expected[1], atol=1e-6, rtol=0)

    async def both() -> tuple[list, list]:
        return await asyncio.gather(embeddings.aembed_documents(TEXTS), embeddings.aembed_query(TEXTS[0]))

    documents, query = asyncio.run(both())
    np.testing.assert_allclose(documents, expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(query, expected[0], atol=1e-6, rtol=0)


def test_llama_index_equals_encode_and_honours_the_batch_size(expected, monkeypatch) -> None:
    from jina_onnx.llama_index import JinaOnnxEmbedding

    embedding = JinaOnnxEmbedding(NAME, embed_batch_size=2, **OPTIONS)
    calls: list[int] = []
    real = JinaOnnxEmbedding._get_text_embeddings
    monkeypatch.setattr(
        JinaOnnxEmbedding, "_get_text_embeddings", lambda self, t: calls.append(len(t)) or real(self, t)
    )
    np.testing.assert_allclose(embedding.get_text_embedding_batch(TEXTS), expected, atol=1e-6, rtol=0)
    assert calls == [2, 2, 1]
    np.testing.assert_allclose(embedding.get_query_embedding(TEXTS[0]), expected[0], atol=1e-6, rtol=0)
    np.testing.assert_allclose(embedding.get_text_embedding(TEXTS[3]), expected[3], atol=1e-6, rtol=0)
    vectors = asyncio.run(embedding.aget_text_embedding_batch(TEXTS))
    np.testing.assert_allclose(vectors, expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(asyncio.run(embedding.aget_query_embedding(TEXTS[1])), expected[1], atol=1e-6, rtol=0)
    assert JinaOnnxEmbedding.class_name() == "JinaOnnxEmbedding" and embedding.model_name == NAME


def test_haystack_embedders_in_a_pipeline_and_through_a_dict(expected) -> None:
    from haystack import Document, Pipeline

    from jina_onnx.haystack import JinaOnnxDocumentEmbedder, JinaOnnxTextEmbedder

    documents = [Document(content=t, meta={"title": f"title {i}"}) for i, t in enumerate(TEXTS)]
    embedder = JinaOnnxDocumentEmbedder(NAME, model_kwargs=OPTIONS)
    embedder.warm_up()
    out = embedder.run(documents)["documents"]
    np.testing.assert_allclose([d.embedding for d in out], expected, atol=1e-6, rtol=0)
    assert [d.id for d in out] == [d.id for d in documents]
    # Meta fields are embedded before the content, joined with the separator, as Haystack's embedders do.
    with_title = JinaOnnxDocumentEmbedder(NAME, model_kwargs=OPTIONS, meta_fields_to_embed=["title"])
    (titled,) = with_title.run(documents[:1])["documents"]
    np.testing.assert_allclose(
        titled.embedding, build_model(NAME, **OPTIONS).encode([f"title 0\n{TEXTS[0]}"])[0], atol=1e-6, rtol=0
    )
    # Serialized and rebuilt, inside a pipeline.
    pipeline = Pipeline()
    pipeline.add_component(
        "query", JinaOnnxTextEmbedder.from_dict(JinaOnnxTextEmbedder(NAME, model_kwargs=OPTIONS).to_dict())
    )
    rebuilt = Pipeline.loads(pipeline.dumps())
    result = rebuilt.run({"query": {"text": TEXTS[1]}})
    np.testing.assert_allclose(result["query"]["embedding"], expected[1], atol=1e-6, rtol=0)
    with pytest.raises(TypeError, match="takes one string"):
        JinaOnnxTextEmbedder(NAME, model_kwargs=OPTIONS).run(TEXTS)  # type: ignore[arg-type]
