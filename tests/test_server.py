"""`jina-onnx serve` over real HTTP on loopback: OpenAI and TEI APIs, batching, limits, safety, SIGTERM.

Every server runs in a subprocess on 127.0.0.1 with a free port, is bounded in requests and time, and is
stopped by the test (SIGTERM, then SIGKILL after 30 s).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from benchmarks.serve import free_port, stop
from benchmarks.sts import load_sts
from jina_onnx import build_model
from jina_onnx.serve.batcher import Batcher, Overloaded, TooLong

T_NAME, S_NAME = "jina-embedding-t-en-v1", "jina-embedding-s-en-v1"


@contextlib.contextmanager
def server(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jina_onnx", "-q", "serve", "--port", str(port), "--device", "cpu", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {proc.stderr.read()}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become healthy in 90 s"
            time.sleep(0.2)
        yield url, proc
    finally:
        stop(proc)  # SIGTERM, then SIGKILL after 30 s


def mixed(count: int, seed: int) -> list[str]:
    sentences = load_sts()[1]
    rng = random.Random(seed)
    return [" ".join(rng.choice(sentences) for _ in range(rng.choice([1, 1, 1, 2, 6]))) for _ in range(count)]


@pytest.fixture(scope="module")
def served(artifact) -> Iterator[tuple[str, dict]]:  # type: ignore[no-untyped-def]
    """A server of t and s (fp32) and the same models in-process, for comparison."""
    models = {
        T_NAME: build_model(artifact("t"), device="cpu", precision="fp32"),
        S_NAME: build_model(artifact("s"), device="cpu", precision="fp32"),
    }
    with server("-m", str(artifact("t")), "-m", str(artifact("s")), "--precision", "fp32") as (url, _):
        yield url, models


def test_openai_client_and_httpx_equal_encode(served) -> None:
    import openai

    url, models = served
    texts = mixed(20, 0) + ["", "Ünïcödé 日本語 😀"]
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    expected = models[T_NAME].encode(texts)
    for encoding in (None, "float", "base64"):  # None: the client asks for base64 and decodes it itself
        options = {"encoding_format": encoding} if encoding else {}
        result = client.embeddings.create(model=T_NAME, input=texts, **options)  # type: ignore[arg-type]
        got = np.array(
            [
                np.frombuffer(base64.b64decode(d.embedding), "<f4") if encoding == "base64" else d.embedding
                for d in result.data
            ],
            dtype=np.float32,
        )
        np.testing.assert_allclose(got, expected, atol=1e-6)
        assert [d.index for d in result.data] == list(range(len(texts))) and result.model == T_NAME
        assert (
            result.usage.prompt_tokens
            == result.usage.total_tokens
            == int(models[T_NAME].tokenizer.tokenize(texts).lengths.sum())
        )
    one = httpx.post(f"{url}/v1/embeddings", json={"model": S_NAME, "input": texts[0]}).json()
    np.testing.assert_allclose(one["data"][0]["embedding"], models[S_NAME].encode(texts[:1])[0], atol=1e-6)
    tei = httpx.post(f"{url}/embed", json={"model": S_NAME, "inputs": texts, "normalize": False})
    np.testing.assert_allclose(np.array(tei.json()), models[S_NAME].encode(texts), atol=1e-6)
    tei_normalized = np.array(httpx.post(f"{url}/embed", json={"model": S_NAME, "inputs": texts[:3]}).json())
    np.testing.assert_allclose(np.linalg.norm(tei_normalized, axis=1), 1.0, atol=1e-6)  # TEI's default
    listed = httpx.get(f"{url}/v1/models").json()
    assert [m["id"] for m in listed["data"]] == [T_NAME, S_NAME]
    missing = httpx.post(f"{url}/v1/embeddings", json={"model": "nope", "input": "x"})
    assert missing.status_code == 404 and T_NAME in missing.json()["error"]["message"]
    assert httpx.post(f"{url}/v1/embeddings", json={"input": "x"}).status_code == 400  # two models: name one
    first = np.array(httpx.post(f"{url}/embed", json={"inputs": ["x"], "normalize": False}).json(), dtype=np.float32)
    np.testing.assert_allclose(first, models[T_NAME].encode(["x"]), atol=1e-6)  # TEI: the first model served


def test_64_concurrent_clients_get_their_own_rows(served) -> None:
    url, models = served
    jobs = [mixed(random.Random(i).randint(1, 6), seed=100 + i) for i in range(64)]
    expected = [models[T_NAME].encode(texts) for texts in jobs]

    async def client(index: int, http: httpx.AsyncClient) -> list[np.ndarray]:
        out = []
        for _ in range(3):
            response = await http.post(f"{url}/v1/embeddings", json={"model": T_NAME, "input": jobs[index]})
            assert response.status_code == 200, response.text
            out.append(np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32))
        return out

    async def main() -> list[list[np.ndarray]]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(timeout=120, limits=limits) as http:
            return await asyncio.gather(*(client(i, http) for i in range(64)))

    results = asyncio.run(main())
    for index, rounds in enumerate(results):
        for got in rounds:
            np.testing.assert_allclose(got, expected[index], atol=1e-5)  # crosstalk would be off by ~1
    metrics = httpx.get(f"{url}/metrics").text
    count = float(
        next(
            line.split()[-1]
            for line in metrics.splitlines()
            if line.startswith(f'jina_onnx_batch_texts_count{{model="{T_NAME}"}}')
        )
    )
    total = float(
        next(
            line.split()[-1]
            for line in metrics.splitlines()
            if line.startswith(f'jina_onnx_batch_texts_sum{{model="{T_NAME}"}}')
        )
    )
    assert total / count > 1.5, "concurrent requests were not batched together"
    assert 'jina_onnx_requests_total{endpoint="/v1/embeddings",status="200"}' in metrics
    assert "jina_onnx_request_seconds_bucket" in metrics and "jina_onnx_queue_depth" in metrics


def test_benchmark_load_generator_reads_whole_responses(served) -> None:
    """The benchmark's raw HTTP/1.1 client gets the same bytes as httpx, and its loop counts no failures."""
    from benchmarks.serve import _Connection, load, post_request, run_loop

    url, models = served
    body = json.dumps({"model": T_NAME, "input": mixed(5, 7)}).encode()

    async def one() -> tuple[int, bytes]:
        connection = await _Connection.open("127.0.0.1", int(url.rsplit(":", 1)[1]))
        try:
            first = await connection.exchange(post_request(f"{url}/v1/embeddings", body))
            second = await connection.exchange(post_request(f"{url}/v1/embeddings", body))  # same keep-alive socket
        finally:
            connection.close()
        assert first == second
        return first

    status, raw = run_loop(one())
    assert status == 200
    assert (
        json.loads(raw)
        == httpx.post(f"{url}/v1/embeddings", content=body, headers={"Content-Type": "application/json"}).json()
    )
    row = run_loop(load(f"{url}/v1/embeddings", T_NAME, mixed(30, 8), per_request=3, concurrency=4, requests=40))
    assert row["failures"] == 0 and row["requests"] == 40 and row["texts_per_s"] > 0 and row["p99_ms"] >= row["p50_ms"]


def test_overload_answers_429_then_recovers(artifact) -> None:
    long_texts = [" ".join(load_sts()[0][i : i + 12]) for i in range(0, 48 * 12, 12)]

    async def burst(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=40)) as http:
            return await asyncio.gather(*(http.post(f"{url}/embed", json={"inputs": long_texts}) for _ in range(40)))

    with server("-m", str(artifact("t")), "--precision", "fp32", "--max-queue", "1") as (url, _):
        statuses = [r.status_code for r in asyncio.run(burst(url))]
        assert 429 in statuses and 200 in statuses and set(statuses) <= {200, 429}
        refused = next(r for r in asyncio.run(burst(url)) if r.status_code == 429)
        assert refused.headers["retry-after"] == "1" and "--max-queue 1" in refused.json()["error"]["message"]
        assert httpx.post(f"{url}/embed", json={"inputs": ["calm again"]}).status_code == 200


def test_bad_requests_get_one_line_4xx(artifact) -> None:
    args = (
        "-m",
        str(artifact("t")),
        "--precision",
        "fp32",
        "--max-inputs-per-request",
        "8",
        "--max-request-bytes",
        "20000",
    )
    with server(*args, env={"JINA_ONNX_API_KEY": "s3cret"}) as (url, _):
        auth = {"Authorization": "Bearer s3cret"}

        def post(body, **kw):  # type: ignore[no-untyped-def]
            return httpx.post(f"{url}/v1/embeddings", content=body, headers={**auth, **kw.pop("headers", {})}, **kw)

        cases = [
            (post(b"{not json"), 400, "malformed JSON"),
            (post(b"[1, 2]"), 400, "must be a JSON object"),
            (post(b'{"input": "caf\xe9"}'), 400, "not valid UTF-8"),
            (post(json.dumps({"input": 42})), 400, "must be a string or a list"),
            (post(json.dumps({"input": ["ok", None]})), 400, "input[1] is null"),
            (post(json.dumps({"input": []})), 400, "empty list"),
            (post(json.dumps({"input": [101, 2023, 102]})), 400, "token-id inputs are not supported"),
            (post(json.dumps({"input": [[101, 2023]]})), 400, "token-id inputs are not supported"),
            (post(json.dumps({"input": "x", "dimensions": 64})), 400, "was not trained for shorter ones"),
            (post(json.dumps({"input": "x", "encoding_format": "int8"})), 400, "encoding_format"),
            (post(json.dumps({"input": "x", "temperature": 1})), 400, "unsupported field(s): temperature"),
            (post(json.dumps({"input": ["x"] * 9})), 413, "over the limit of 8 per request"),
            (post(json.dumps({"input": "x" * 30000})), 413, "--max-request-bytes"),
            (
                post(json.dumps({"input": ["ok", "word " * 600], "truncate": False})),
                413,
                "input[1] has 602 tokens, over the model's limit of 512",
            ),
            (
                post(json.dumps({"input": ["word " * 600], "truncation": "refuse"})),
                413,
                'or send "truncation": "right" to cut them',
            ),
            (post(json.dumps({"input": ["word " * 600], "truncate": False})), 413, 'or send "truncate": true'),
            (post(json.dumps({"input": [101, 2023]})), 400, "set check_embedding_ctx_length=False"),
            (post(json.dumps({"input": "x", "truncation": "middle"})), 400, "truncation 'middle' is not one of"),
            (post(b"[" * 9000 + b"]" * 9000), 400, "nested too deeply"),  # a hostile body: never a 500
            (httpx.post(f"{url}/v1/embeddings", json={"input": "x"}), 401, "API key"),
            (
                httpx.post(f"{url}/v1/embeddings", json={"input": "x"}, headers={"Authorization": "Bearer s3cre"}),
                401,
                "API key",
            ),
            (httpx.post(f"{url}/embed", json={"inputs": "x", "normalize": "yes"}, headers=auth), 400, "'normalize'"),
        ]
        for response, status, fragment in cases:
            assert response.status_code == status, (fragment, response.text)
            message = response.json()["error"]["message"]
            assert fragment in message and "\n" not in message and "Traceback" not in response.text
        chunked = httpx.post(f"{url}/v1/embeddings", content=iter([b'{"input": "', b"y" * 25000, b'"}']), headers=auth)
        assert chunked.status_code == 413  # no Content-Length: the limit holds while the body streams in
        assert post(json.dumps({"input": "word " * 600})).status_code == 200  # truncated by default
        assert post(json.dumps({"input": "x", "dimensions": 312})).status_code == 200  # the model's own width
        for response, status, fragment in (
            (httpx.get(f"{url}/nowhere"), 404, "no route /nowhere; routes: POST /v1/embeddings"),
            (httpx.get(f"{url}/v1/embeddings", headers=auth), 405, "GET is not allowed on /v1/embeddings; use POST"),
            (httpx.delete(f"{url}/health"), 405, "use GET"),
        ):
            assert response.status_code == status and fragment in response.json()["error"]["message"], response.text
        assert httpx.get(f"{url}/health").status_code == 200  # health and metrics need no key
        assert httpx.get(f"{url}/v1/models").status_code == 401


def test_truncation_through_the_server_equals_encode(served) -> None:
    url, models = served
    model = models[T_NAME]
    long = " ".join(f"word{i}" for i in range(700))
    for side in ("right", "left"):
        body = {"model": T_NAME, "input": [long, "short"], "truncation": side}
        answer = httpx.post(f"{url}/v1/embeddings", json=body, timeout=60).json()
        got = np.array([d["embedding"] for d in answer["data"]], dtype=np.float32)
        with pytest.warns(UserWarning):
            expected = model.encode([long, "short"], truncation=side)
        np.testing.assert_allclose(got, expected, atol=1e-6)
        assert answer["usage"]["total_tokens"] == int(model.count_tokens([long, "short"]).sum())  # tokens embedded
        tei = httpx.post(
            f"{url}/embed",
            json={
                "model": T_NAME,
                "inputs": [long],
                "truncate": True,
                "truncation_direction": side.title(),
                "normalize": False,
            },
            timeout=60,
        ).json()
        np.testing.assert_allclose(np.array(tei, dtype=np.float32), expected[:1], atol=1e-6)
    refused = httpx.post(f"{url}/embed", json={"model": T_NAME, "inputs": ["a", long], "truncate": False}, timeout=60)
    assert refused.status_code == 413 and "inputs[1] has" in refused.json()["error"]["message"]


def test_two_workers_answer_as_encode_and_stop_cleanly(artifact) -> None:
    model = build_model(artifact("t"), device="cpu", precision="fp32")
    texts = mixed(48, 3)

    async def burst(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=16)) as http:
            one = [http.post(f"{url}/v1/embeddings", json={"input": text}) for text in texts]
            many = [
                http.post(f"{url}/embed", json={"inputs": texts[i : i + 6], "normalize": False})
                for i in range(0, 48, 6)
            ]
            return await asyncio.gather(*one, *many)

    with server("-m", str(artifact("t")), "--precision", "fp32", "--workers", "2") as (url, proc):
        workers = [
            p for p in Path("/proc").glob("[0-9]*/stat") if p.read_text().rsplit(")", 1)[1].split()[1] == str(proc.pid)
        ]
        assert len(workers) >= 2  # the supervisor's children: two workers (and multiprocessing's tracker)
        answers = asyncio.run(burst(url))
        assert {a.status_code for a in answers} == {200}
        one = np.array([a.json()["data"][0]["embedding"] for a in answers[:48]], dtype=np.float32)
        many = np.concatenate([np.array(a.json(), dtype=np.float32) for a in answers[48:]])
        expected = model.encode(texts)
        np.testing.assert_allclose(one, expected, atol=1e-6)  # whichever worker, alone or batched
        np.testing.assert_allclose(many, expected, atol=1e-6)
        taken = subprocess.run(
            [
                sys.executable,
                "-m",
                "jina_onnx",
                "serve",
                "-m",
                str(artifact("t")),
                "--workers",
                "2",
                "--port",
                url.rsplit(":", 1)[1],
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert (
            taken.returncode == 1 and "cannot listen on 127.0.0.1" in taken.stderr and "Traceback" not in taken.stderr
        )
    assert proc.returncode == 0  # SIGTERM: every worker finished, the supervisor exited cleanly


def test_sigterm_finishes_requests_in_flight(artifact) -> None:
    texts = mixed(600, 7)
    with server("-m", str(artifact("s")), "--precision", "fp32") as (url, proc):
        result: dict[str, httpx.Response] = {}
        sender = threading.Thread(
            target=lambda: result.setdefault(
                "response", httpx.post(f"{url}/embed", json={"inputs": texts[:200]}, timeout=120)
            )
        )
        sender.start()
        time.sleep(0.5)  # the request is being embedded
        proc.send_signal(signal.SIGTERM)
        sender.join(timeout=120)
        assert proc.wait(timeout=60) == 0
        response = result["response"]
        assert response.status_code == 200 and len(response.json()) == 200
        with pytest.raises(httpx.TransportError):
            httpx.post(f"{url}/embed", json={"inputs": ["after"]}, timeout=2)


class FakeTokenizer:
    """Text "7 7 7" -> ids [7, 7, 7]: each text's first id names it in the batches a SlowModel records."""

    def tokenize(self, texts: list[str], max_length: int | None = None, *, private: bool = False, side: str = "right"):  # type: ignore[no-untyped-def]
        from jina_onnx.tokenization import TokenizedBatch

        ids = [[int(word) for word in text.split()][:512] for text in texts]
        return TokenizedBatch(ids=ids, truncated=sum(len(text.split()) > 512 for text in texts))

    def count(self, texts: list[str]) -> np.ndarray:
        return np.array([len(text.split()) for text in texts])


class SlowModel:
    """Stands in for EmbeddingModel: records each batch, takes 50 ms, returns each text's first id."""

    name, dim, default_token_budget, device, max_length = "slow", 1, 100, "cpu", 512

    def __init__(self) -> None:
        self.tokenizer = FakeTokenizer()
        self.batches: list[list[list[int]]] = []
        self.threads: list[str] = []
        self.sub_batches: list[int | None] = []
        self.running = self.most_at_once = 0
        self.lock = threading.Lock()

    def embed_token_ids(
        self, ids: list[list[int]], *, token_budget: int | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        with self.lock:
            self.batches.append(ids)
            self.threads.append(threading.current_thread().name)
            self.sub_batches.append(batch_size)
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1
        return np.array([[seq[0]] for seq in ids], dtype=np.float32)


def words(value: int, count: int) -> str:
    return " ".join([str(value)] * count)


def test_batcher_budget_no_starvation_cancellation_and_queue_limit() -> None:
    model = SlowModel()

    async def main() -> None:
        # The budget counts each text as its characters + 2 (an upper bound of its tokens): 11 for "1 1 1 1 1".
        batcher = Batcher(model, max_batch_tokens=100, max_queue=3)  # type: ignore[arg-type]
        batcher.start()
        first = asyncio.ensure_future(batcher.embed([words(1, 5)]))
        await asyncio.sleep(0.01)  # running now; the next ones queue
        huge = asyncio.ensure_future(batcher.embed([words(2, 150)]))  # alone over the budget: still runs
        gone = asyncio.ensure_future(batcher.embed([words(3, 3)]))
        small = asyncio.ensure_future(batcher.embed([words(4, 3), words(5, 3)]))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            await batcher.embed(["6"])
        gone.cancel()  # the client went away while queued
        assert (await first).tolist() == [[1.0]]
        assert (await huge).tolist() == [[2.0]]
        assert (await small).tolist() == [[4.0], [5.0]]
        await batcher.stop()

    asyncio.run(asyncio.wait_for(main(), timeout=30))
    firsts = [[seq[0] for seq in batch] for batch in model.batches]
    assert firsts == [[1], [2], [4, 5]]  # 150 tokens ran alone, the cancelled request never ran
    assert model.most_at_once == 1 and set(model.sub_batches) == {8}  # CPU: length-sorted calls of 8 texts


def test_batcher_runs_batches_in_flight_at_once_and_each_request_gets_its_rows() -> None:
    model = SlowModel()

    async def main() -> list[np.ndarray]:
        # Each request: 11 + 21 = 32 by the bound, so a budget of 32 makes one batch of each request.
        batcher = Batcher(model, max_batch_tokens=32, in_flight=2)  # type: ignore[arg-type]
        batcher.start()
        jobs = [asyncio.ensure_future(batcher.embed([words(i, 5), words(100 + i, 5)])) for i in range(6)]
        done = await asyncio.gather(*jobs)
        await batcher.stop()
        return done

    results = asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert [r.ravel().tolist() for r in results] == [[i, 100 + i] for i in range(6)]
    assert model.most_at_once == 2 and len(model.batches) == 6  # two ran at once, never more
    model.batches.clear()

    async def lone() -> np.ndarray:  # one large request, nothing else in progress: the lone model, on a thread
        batcher = Batcher(model, max_batch_tokens=1000, in_flight=2, alone=lambda: True, lone_model=lone_model)  # type: ignore[arg-type]
        batcher.start()
        out = await batcher.embed([str(i) for i in range(150)])
        await batcher.stop()
        return out

    lone_model = SlowModel()
    assert asyncio.run(asyncio.wait_for(lone(), timeout=30)).ravel().tolist() == list(range(150))
    assert model.batches == [] and [len(b) for b in lone_model.batches] == [150]
    assert lone_model.threads[0].startswith("jina-onnx-infer")  # over the inline size: not on the event loop
    with pytest.raises(ValueError, match="in_flight"):
        Batcher(model, max_batch_tokens=20, in_flight=0)  # type: ignore[arg-type]


def test_batcher_runs_a_lone_request_inline_on_its_own_model_and_drops_gone_clients() -> None:
    model, lone_model = SlowModel(), SlowModel()
    alone = [True]

    async def main() -> None:
        batcher = Batcher(model, max_batch_tokens=100, alone=lambda: alone[0], lone_model=lone_model)  # type: ignore[arg-type]
        batcher.start()
        assert (await batcher.embed(["7 7"])).tolist() == [[7.0]]  # alone and short: the lone model, inline
        alone[0] = False
        busy = asyncio.ensure_future(batcher.embed(["8"]))  # under load: the batch model, on its thread
        await asyncio.sleep(0.01)
        left = batcher.submit(["9"], gone=lambda: True)  # its client disconnected while it queued
        assert (await busy).tolist() == [[8.0]]
        with pytest.raises(asyncio.CancelledError):
            await left
        refused = batcher.submit([words(1, 600)], truncation="refuse")
        with pytest.raises(TooLong) as error:
            await refused
        assert (error.value.index, error.value.tokens, error.value.limit) == (0, 600, 512)
        await batcher.stop()

    asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert [[seq[0] for seq in batch] for batch in lone_model.batches] == [[7]]
    assert lone_model.threads == [threading.main_thread().name]  # on the event loop: no thread hand-off
    assert [[seq[0] for seq in batch] for batch in model.batches] == [[8]]  # the gone and the refused never ran
    assert model.threads[0].startswith("jina-onnx-infer")


def test_load_models_opens_one_session_per_model(artifact, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import jina_onnx.engines.onnxruntime as ort_engine
    from jina_onnx.serve import loading

    directory = str(artifact("t"))  # exported (and its sessions opened) before counting
    sessions = []
    real = ort_engine.create_session

    def counting(path, device, threads, *args, **kwargs):
        sessions.append((Path(path).name, threads))
        return real(path, device, threads, *args, **kwargs)

    monkeypatch.setattr(ort_engine, "create_session", counting)
    monkeypatch.setattr(loading, "physical_cores", lambda: 2)
    monkeypatch.setenv("JINA_ONNX_HOME", str(tmp_path))
    # A named precision: one session with its share of the cores, two batches in flight, and one on every core
    # for a request that has the server to itself.
    loaded, counts, lone = loading.load_models([directory], device="cpu", precision="int8")
    assert sessions == [("model_quantized.onnx", 1), ("model_quantized.onnx", 2)]
    assert (
        counts == {"jina-embedding-t-en-v1": 2}
        and lone["jina-embedding-t-en-v1"].onnx_path.name == "model_quantized.onnx"
    )
    # "auto": each candidate is opened once to measure it, with the threads it would serve with, and the
    # fastest is served as measured (not loaded again); the next start reads the cache and opens one (+ lone).
    sessions.clear()
    loaded, _, _ = loading.load_models([directory], device="cpu")
    measured = sessions[:-1]
    assert len(measured) == len(set(measured)) >= 2 and {threads for _, threads in measured} == {1}
    sessions.clear()
    again, _, _ = loading.load_models([directory], device="cpu")
    name = loaded["jina-embedding-t-en-v1"].onnx_path.name
    assert sessions == [(name, 1), (name, 2)]


def test_serve_help_loads_no_server_stack() -> None:
    code = (
        "import sys; from jina_onnx.cli import main\ntry: main(['serve', '--help'])\nexcept SystemExit: pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'prometheus_client')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "--max-batch-tokens" in out and out.strip().endswith("[]")


def test_serve_refuses_bad_limits(capsys) -> None:
    from jina_onnx.cli import main

    assert main(["serve", "--max-queue", "0"]) == 1
    assert "--max-queue=0 is out of range" in capsys.readouterr().err
    assert main(["serve", "--batches-in-flight", "0"]) == 1
    assert "--batches-in-flight=0 is out of range" in capsys.readouterr().err
    assert main(["serve", "--batches-in-flight", "1000"]) == 1
    assert "--batches-in-flight=1000 is over 64" in capsys.readouterr().err
    with socket.socket() as taken:  # a port in use is found before any model is looked for
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", "-m", "no-such-model", "--port", str(taken.getsockname()[1])]) == 1
        err = capsys.readouterr().err
        assert "cannot listen on 127.0.0.1:" in err and "pick another --port" in err and "no-such-model" not in err


def test_readme_serve_section_names_real_options() -> None:
    # The README's serve section and the defaults table it links to (docs/architecture.md#server-defaults).
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text() + (root / "docs" / "architecture.md").read_text()
    for option in (
        "--max-batch-tokens",
        "--max-batch-wait-ms",
        "--max-queue",
        "--max-inputs-per-request",
        "--max-request-bytes",
        "--batches-in-flight",
        "--api-key",
        "JINA_ONNX_API_KEY",
        'pip install "jina-onnx[serve',
    ):
        assert option in readme
