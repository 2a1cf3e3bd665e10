"""Models by Hub id (jina_onnx.hub): the real huggingface_hub client against a loopback server that answers the
Hub's file API for a directory (`HF_ENDPOINT`), counting what is fetched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import httpx
import numpy as np
import pytest

from benchmarks.serve import free_port, stop
from jina_onnx import build_model
from jina_onnx.cli import main
from jina_onnx.errors import ArtifactError, HubError
from jina_onnx.manifest import load_manifest

REPO = "someone/jina-t-onnx"
MAIN, PINNED = "a" * 40, "b" * 40


class FakeHub:
    """Repositories {repo: {revision name or commit: (commit, {path: bytes})}} behind the Hub's routes:
    GET /api/models/{repo}/revision/{rev} (the file list) and HEAD/GET /{repo}/resolve/{rev}/{path}."""

    def __init__(self, repos: dict[str, dict[str, tuple[str, dict[str, bytes]]]]) -> None:
        self.repos = repos
        self.downloads: list[str] = []  # paths of every GET of a file
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self.answer(body=False)

            def do_GET(self) -> None:
                self.answer(body=True)

            def answer(self, body: bool) -> None:
                parts = [unquote(p) for p in self.path.split("?")[0].strip("/").split("/")]
                if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "revision":
                    repo, revision = "/".join(parts[2:4]), "/".join(parts[5:])
                    found = hub.lookup(repo, revision)
                    if isinstance(found, str):
                        return self.error(found)
                    commit, files = found
                    data = {"id": repo, "sha": commit, "siblings": [{"rfilename": name} for name in files]}
                    return self.send(json.dumps(data).encode(), {"Content-Type": "application/json"}, body)
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo, revision, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                    found = hub.lookup(repo, revision)
                    if isinstance(found, str):
                        return self.error(found)
                    commit, files = found
                    if name not in files:
                        return self.error("EntryNotFound")
                    if body:
                        hub.downloads.append(name)
                    etag = f'"{abs(hash((commit, name, files[name]))):x}"'
                    return self.send(files[name], {"X-Repo-Commit": commit, "ETag": etag}, body)
                self.error("RepoNotFound")

            def error(self, code: str) -> None:
                self.send_response(404)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Type", "application/json")
                message = json.dumps({"error": code}).encode()
                self.send_header("Content-Length", str(len(message)))
                self.end_headers()
                self.wfile.write(message)

            def send(self, data: bytes, headers: dict[str, str], body: bool) -> None:
                self.send_response(200)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def lookup(self, repo: str, revision: str) -> tuple[str, dict[str, bytes]] | str:
        if repo not in self.repos:
            return "RepoNotFound"
        return self.repos[repo].get(revision) or "RevisionNotFound"

    def graphs(self) -> set[str]:
        return {name for name in self.downloads if name.endswith(".onnx")}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def repo_files(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def hub(artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """The t export at MAIN (branch main) and, renamed in its manifest, at PINNED (tag v2); an export whose int8
    graph is damaged; a repository without ONNX. The client reads HF_ENDPOINT and HF_HUB_CACHE from here."""
    import huggingface_hub.constants

    files = repo_files(Path(artifact("t")))
    pinned = dict(files)
    manifest = json.loads(files["manifest.json"])
    pinned["manifest.json"] = json.dumps({**manifest, "name": "pinned-model"}).encode()
    damaged = dict(files)
    damaged["onnx/model_quantized.onnx"] = files["onnx/model_quantized.onnx"][:-1000]  # a partial upload
    fake = FakeHub(
        {
            REPO: {"main": (MAIN, files), MAIN: (MAIN, files), "v2": (PINNED, pinned), PINNED: (PINNED, pinned)},
            "someone/damaged": {"main": (MAIN, damaged), MAIN: (MAIN, damaged)},
            "someone/pytorch-only": {"main": (MAIN, {"config.json": b"{}"}), MAIN: (MAIN, {"config.json": b"{}"})},
        }
    )
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # read when huggingface_hub loaded
    monkeypatch.setenv("JINA_ONNX_HOME", str(tmp_path / "home"))
    try:
        yield fake
    finally:
        fake.close()


def test_a_named_precision_fetches_its_graph_and_no_other(hub: FakeHub) -> None:
    model = build_model(REPO, device="cpu", precision="int8")
    assert hub.graphs() == {"onnx/model_quantized.onnx"}
    assert set(hub.downloads) - hub.graphs() <= {n for n in hub.repos[REPO]["main"][1] if n.endswith(".json")}
    assert model.encode(["a text"]).shape == (1, 312)


def test_auto_fetches_only_its_candidates_then_runs_offline_from_the_cache(hub: FakeHub, artifact, monkeypatch) -> None:
    model = build_model(REPO, device="cpu")  # "auto": measures its CPU candidates
    fetched = hub.graphs()
    assert "onnx/model_fp16.onnx" not in fetched  # a CUDA variant: never a CPU candidate
    assert model.onnx_path.relative_to(model.directory).as_posix() in fetched and len(fetched) >= 2
    local = build_model(artifact("t"), device="cpu", precision=model.precision)
    assert np.abs(model.encode(["a text"]) - local.encode(["a text"])).max() < 1e-6
    hub.close()  # the Hub is gone: the second load runs from the cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = build_model(REPO, device="cpu")
    assert again.precision == model.precision and again.directory == model.directory
    with pytest.raises(HubError, match="not in the Hugging Face cache and the Hub is offline"):
        build_model(REPO, device="cpu", precision="fp16")  # a graph never fetched: said, not a traceback


def test_a_pinned_revision_loads_that_revision(hub: FakeHub) -> None:
    assert build_model(REPO, device="cpu", precision="fp32").name == "jina-embedding-t-en-v1"
    assert build_model(REPO, device="cpu", precision="fp32", revision="v2").name == "pinned-model"
    assert build_model(f"{REPO}@{PINNED}", device="cpu", precision="fp32").name == "pinned-model"


def test_a_graph_damaged_on_the_server_is_refused_never_used(hub: FakeHub) -> None:
    with pytest.raises(ArtifactError, match=r"onnx/model_quantized.onnx has sha256 .* \(fetched twice\)"):
        build_model("someone/damaged", device="cpu", precision="int8")
    assert hub.downloads.count("onnx/model_quantized.onnx") == 2
    cached = list(Path(os.environ["HF_HUB_CACHE"]).rglob("model_quantized.onnx"))
    assert not any(p.exists() for p in cached)  # not left in the cache for a later load to pick up


def test_a_graph_damaged_in_the_cache_is_fetched_again(hub: FakeHub) -> None:
    first = build_model(REPO, device="cpu", precision="int8")
    blob = first.onnx_path.resolve()  # the cache's blob behind the snapshot's link
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a bit flipped on this disk; the Hub's copy is fine
    blob.write_bytes(bytes(data))
    again = build_model(REPO, device="cpu", precision="int8")
    assert hub.downloads.count("onnx/model_quantized.onnx") == 2  # fetched once more, then used
    assert np.abs(again.encode(["a text"]) - first.encode(["a text"])).max() == 0.0


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["encode", "-m", "someone/nothing-here", "x"], 1, "Hub repository 'someone/nothing-here' does not exist"),
        (["encode", "-m", f"{REPO}@v9", "x"], 1, f"{REPO} has no revision 'v9'"),
        (["encode", "-m", "someone/pytorch-only", "x"], 1, "no ONNX graph (onnx/model.onnx): it is not an ONNX export"),
    ],
)
def test_hub_errors_are_one_line(hub: FakeHub, capsys, argv, code, message) -> None:  # type: ignore[no-untyped-def]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_no_network_and_nothing_cached_says_so(hub: FakeHub, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert main(["encode", "-m", REPO, "x"]) == 3
    err = capsys.readouterr().err
    assert "is not in the Hugging Face cache and the Hub cannot be reached" in err and "Traceback" not in err


def test_cli_embed_ray_and_serve_take_the_same_id(hub: FakeHub, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one text\nanother text\n")
    run = lambda *argv: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "jina_onnx", "-q", *argv], capture_output=True, text=True, env=env, timeout=300
    )
    encoded = run("encode", "-m", REPO, "--precision", "int8", "one text")
    assert encoded.returncode == 0, encoded.stderr
    vector = json.loads(encoded.stdout)["embedding"]
    local = run("embed", str(corpus), str(tmp_path / "local"), "-m", REPO, "--precision", "int8")
    assert local.returncode == 0 and local.stdout.startswith("2 texts embedded"), local.stderr
    on_ray = run("embed", str(corpus), str(tmp_path / "ray"), "-m", REPO, "--precision", "int8", "--ray")
    assert on_ray.returncode == 0 and on_ray.stdout.startswith("2 texts embedded"), on_ray.stderr
    import pyarrow.parquet as pq

    def cosine(a: list[float], b: list[float]) -> float:
        return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))

    for out in ("local", "ray"):  # int8's activation ranges follow the batch: the same model, within int8's gate
        table = pq.read_table(tmp_path / out).sort_by("id")
        assert cosine(table["embedding"].to_pylist()[0], vector) > 0.999
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "jina_onnx", "-q", "serve", "-m", REPO, "--precision", "int8", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(600):
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/v1/embeddings", json={"input": "one text"}, timeout=5)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.communicate()
                time.sleep(0.2)
        assert response.status_code == 200, response.text
        assert response.json()["model"] == "jina-embedding-t-en-v1"
        assert np.allclose(response.json()["data"][0]["embedding"], vector, atol=1e-5)  # one text, as encode
    finally:
        stop(server)
    assert load_manifest(next(Path(os.environ["HF_HUB_CACHE"]).rglob("manifest.json")).parent).name
