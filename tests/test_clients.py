"""The clients people point at embedding servers, against `jina-onnx serve` on loopback: the real packages,
offline, each getting the vectors `encode` gives (within 1e-6)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from jina_onnx import build_model
from jina_onnx.similarity import l2_normalize
from tests.test_server import server

NAME = "jina-embedding-t-en-v1"
TEXTS = ["how is the weather today", "What is the current weather like today?", "a third text"]


@pytest.fixture(scope="module")
def served(artifact) -> Iterator[tuple[str, np.ndarray]]:  # type: ignore[no-untyped-def]
    expected = build_model(artifact("t"), device="cpu", precision="fp32").encode(TEXTS)
    with server("-m", str(artifact("t")), "--precision", "fp32") as (url, _):
        yield url, expected


def test_langchain_openai_embeddings(served) -> None:
    from langchain_openai import OpenAIEmbeddings

    url, expected = served
    client = OpenAIEmbeddings(model=NAME, base_url=f"{url}/v1", api_key="unused", check_embedding_ctx_length=False)
    np.testing.assert_allclose(client.embed_documents(TEXTS), expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(client.embed_query(TEXTS[0]), expected[0], atol=1e-6, rtol=0)


def test_langchain_openai_default_settings_get_a_400_that_names_the_fix(served, monkeypatch) -> None:
    """By default OpenAIEmbeddings tokenizes with tiktoken and sends OpenAI's token ids, not text. tiktoken
    downloads its vocabulary, which no test machine reaches: a byte-level stand-in vocabulary takes its place
    (patched into tiktoken, not into LangChain), so LangChain runs with its default settings and the server
    sees the request it would send."""
    import openai
    import tiktoken
    from langchain_openai import OpenAIEmbeddings

    stand_in = tiktoken.Encoding(
        name="stand-in", pat_str=r"\S+|\s+", mergeable_ranks={bytes([b]): b for b in range(256)}, special_tokens={}
    )
    monkeypatch.setattr(tiktoken, "encoding_for_model", lambda name: stand_in)
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: stand_in)
    url, _ = served
    client = OpenAIEmbeddings(model=NAME, base_url=f"{url}/v1", api_key="unused")
    with pytest.raises(openai.BadRequestError, match="set check_embedding_ctx_length=False"):
        client.embed_documents(TEXTS)


def test_llama_index_openai_like(served) -> None:
    from llama_index.embeddings.openai_like import OpenAILikeEmbedding

    url, expected = served
    client = OpenAILikeEmbedding(model_name=NAME, api_base=f"{url}/v1", api_key="unused", embed_batch_size=2)
    np.testing.assert_allclose(client.get_text_embedding_batch(TEXTS), expected, atol=1e-6, rtol=0)


def test_llama_index_text_embeddings_inference(served) -> None:
    from llama_index.embeddings.text_embeddings_inference import TextEmbeddingsInference

    url, expected = served
    client = TextEmbeddingsInference(model_name=NAME, base_url=url, truncate_text=True, timeout=60)
    # TEI normalizes by default; so does this route.
    np.testing.assert_allclose(client.get_text_embedding_batch(TEXTS), l2_normalize(expected), atol=1e-6, rtol=0)


def test_huggingface_hub_inference_client_on_tei_routes(served, monkeypatch) -> None:
    from huggingface_hub import InferenceClient, constants
    from huggingface_hub.utils import _http

    # The tests run with HF_HUB_OFFLINE=1 (no hub), which also stops the client reaching loopback: lift it here.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    _http.reset_sessions()
    try:
        check_tei_routes(InferenceClient, *served)
    finally:
        monkeypatch.undo()
        _http.reset_sessions()  # offline again for the tests after this one


def check_tei_routes(InferenceClient, url: str, expected: np.ndarray) -> None:  # type: ignore[no-untyped-def]  # noqa: N803
    client = InferenceClient(model=url)
    vector = client.feature_extraction(TEXTS[1])
    np.testing.assert_allclose(np.asarray(vector).reshape(-1), l2_normalize(expected)[1], atol=1e-6, rtol=0)
    raw = client.feature_extraction(TEXTS[1], normalize=False, truncate=True, truncation_direction="Left")
    np.testing.assert_allclose(np.asarray(raw).reshape(-1), expected[1], atol=1e-6, rtol=0)
    import httpx

    tokens = httpx.post(f"{url}/tokenize", json={"inputs": ["how is the weather"]}).json()
    assert [t["text"] for t in tokens[0]] == ["[CLS]", "how", "is", "the", "weather", "[SEP]"]
    assert tokens[0][1] == {"id": tokens[0][1]["id"], "text": "how", "special": False, "start": 0, "stop": 3}
    info = httpx.get(f"{url}/info").json()
    assert info["model_id"] == NAME and info["max_input_length"] == 512
    from jina_onnx.machine import cpu_class

    assert info["cpu_class"] == cpu_class().name and info["backend"] in ("onnxruntime", "openvino")


def test_readme_client_snippet_runs(served, monkeypatch) -> None:
    import re
    from pathlib import Path

    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    url, expected = served
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    snippet = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "InferenceClient" in b)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # loopback only (see above)
    _http.reset_sessions()
    try:
        scope: dict = {}
        exec(compile(snippet.replace("http://127.0.0.1:8080", url), "README.md", "exec"), scope)
    finally:
        monkeypatch.undo()
        _http.reset_sessions()
    np.testing.assert_allclose(scope["langchain"].embed_query(TEXTS[0]), expected[0], atol=1e-6, rtol=0)
    np.testing.assert_allclose(scope["tei"].get_text_embedding(TEXTS[0]), l2_normalize(expected)[0], atol=1e-6, rtol=0)
    assert np.asarray(scope["vector"]).size == 312
