"""`jina-onnx serve --ray`: the server in Ray Serve replicas on a multi-node Ray cluster on this machine.

The cluster (`ray.cluster_utils.Cluster`, as Ray's own tests build one) has a head with no CPUs for replicas,
where Ray Serve's one proxy runs, and two worker nodes with 4 CPUs each: every request crosses nodes. It runs
in the loopback-only network namespace the tests use (scripts/test.sh), is bounded in requests and time, and is
taken down by the fixture. The CLI tests start their own local Ray through `jina-onnx serve --ray`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest

from benchmarks.serve import free_port, stop, wait_healthy
from jina_onnx import build_model
from jina_onnx.serve.workers import WorkerConfig
from tests.test_no_traceback import KEY, SERVER_ROUTES, check, ray_gone, ray_processes, run_cli

ray = pytest.importorskip("ray")
from jina_onnx.serve.ray import APP_NAME, DEPLOYMENT, Scaling, application, wait_until_running  # noqa: E402

TEXTS = ["how is the weather today", "What is the current weather like today?", "a third, rather different text"]
TIMEOUT = 20.0  # the proxy's request timeout in these tests (seconds)


# ---- the command -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--cpus-per-replica", "64"], "a replica of 64 CPUs and 0 GPUs fits on no node of this Ray cluster"),
        # GPUs are counted by Ray: this one is refused after a local Ray started, which must stop again.
        (["--gpus-per-replica", "1"], "a replica of 2 CPUs and 1 GPUs fits on no node of this Ray cluster"),
        (["--replicas", "auto", "--min-replicas", "3", "--max-replicas", "2"], "need 1 <= min <= max"),
        (["--workers", "2"], "--workers does not apply with --ray"),
        (["--replicas", "two"], "--replicas two: give a number of replicas or 'auto'"),
    ],
)
def test_cli_refuses_what_ray_cannot_place_in_one_line(artifact, argv: list[str], fragment: str) -> None:  # type: ignore[no-untyped-def]
    marker = f"JINA_ONNX_TEST_RAY_SERVE_{os.getpid()}_refused"
    started = time.monotonic()
    result = run_cli(
        "serve", "--ray", "-m", str(artifact("t")), "--port", str(free_port()), *argv, timeout=120, env={marker: "1"}
    )
    check(result.returncode, result.stdout, result.stderr, 1, fragment)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert time.monotonic() - started < 30
    assert ray_gone(marker), ray_processes(marker)


# ---- a multi-node cluster ---------------------------------------------------------------------------------------


class Cluster:
    """A head (no CPUs: the proxy and the controller) and two 4-CPU worker nodes, one process each."""

    def __init__(self) -> None:
        from ray.cluster_utils import Cluster as RayCluster

        if ray.is_initialized():
            ray.shutdown()
        self.cluster = RayCluster(initialize_head=True, head_node_args={"num_cpus": 0})
        self.workers = [self.cluster.add_node(num_cpus=4) for _ in range(2)]
        ray.init(address=self.cluster.address, log_to_driver=False, logging_level=logging.WARNING)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def deploy(self, config: WorkerConfig, scaling: Scaling) -> None:
        ray.serve.run(application(config, scaling), name=APP_NAME, route_prefix="/", blocking=False)
        wait_until_running(120)

    def replicas(self) -> dict[str, int]:
        """Replicas by state, e.g. {"RUNNING": 2}."""
        status = ray.serve.status().applications[APP_NAME].deployments[DEPLOYMENT]
        return {str(state).rsplit(".", 1)[-1]: count for state, count in status.replica_states.items()}

    def wait_for(self, running: int, within: float) -> float:
        """Seconds until exactly `running` replicas run and none starts or stops; AssertionError after `within`."""
        started = time.monotonic()
        while self.replicas() != {"RUNNING": running}:
            assert time.monotonic() - started < within, f"replicas {self.replicas()}, wanted {running} running"
            time.sleep(0.25)
        return time.monotonic() - started

    def close(self) -> None:
        try:
            ray.serve.shutdown()
        finally:
            ray.shutdown()
            self.cluster.shutdown()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    made = Cluster()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def fixed(cluster: Cluster, artifact) -> Iterator[Cluster]:  # type: ignore[no-untyped-def]
    """`jina-onnx serve --ray ADDRESS` deploying two replicas of t (fp32) on the cluster, with the API key and the
    limits of test_no_traceback.py's server; SIGTERM at the end must take its application down, exit 0."""
    args = ["-m", str(artifact("t")), "--precision", "fp32", "--max-inputs-per-request", "8"]
    args += ["--max-request-bytes", "20000", "--replicas", "2", "--cpus-per-replica", "2"]
    args += ["--request-timeout", str(TIMEOUT), "--port", str(cluster.port), "--device", "cpu"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "jina_onnx", "serve", "--ray", cluster.cluster.address, *args],
        env={**os.environ, "JINA_ONNX_API_KEY": KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_healthy(cluster.url, proc, 120)
        yield cluster
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "through Ray Serve (2 replicas)" in stderr, stderr
        assert "Traceback" not in stderr, stderr
        assert APP_NAME not in ray.serve.status().applications  # taken down; the cluster's Serve stays
    finally:
        stop(proc)


def test_a_replica_the_cluster_cannot_hold_is_refused_after_joining(cluster: Cluster, artifact) -> None:  # type: ignore[no-untyped-def]
    """Against a cluster, the nodes Ray reports decide: 8 CPUs fit on none of the 4-CPU nodes."""
    started = time.monotonic()
    result = run_cli(
        "serve", "--ray", cluster.cluster.address, "-m", str(artifact("t")), "--cpus-per-replica", "8", timeout=120
    )
    check(result.returncode, result.stdout, result.stderr, 1, "a replica of 8 CPUs and 0 GPUs fits on no node")
    assert "its nodes: 4 CPUs, 0 GPUs; 4 CPUs, 0 GPUs; 0 CPUs, 0 GPUs" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and time.monotonic() - started < 30


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def test_every_route_matches_encode_across_nodes(fixed: Cluster, artifact) -> None:  # type: ignore[no-untyped-def]
    """Vectors within 1e-6 of `encode` on every embedding route and output precision, and both worker nodes
    answer (the head never does: it holds no replica)."""
    from openai import OpenAI

    model = build_model(artifact("t"), device="cpu", precision="fp32")
    expected = model.encode(TEXTS)
    client = OpenAI(base_url=f"{fixed.url}/v1", api_key=KEY)
    for encoding in ("float", "base64"):
        data = client.embeddings.create(model=model.name, input=TEXTS, encoding_format=encoding).data
        got = [
            np.frombuffer(base64.b64decode(d.embedding), "<f4") if encoding == "base64" else d.embedding for d in data
        ]
        np.testing.assert_allclose(np.array(got, dtype=np.float32), expected, atol=1e-6, rtol=0)
    nodes = set()
    with httpx.Client(base_url=fixed.url, headers=auth(), timeout=TIMEOUT) as http:
        for route in ("/embed", "/"):
            answer = http.post(route, json={"inputs": TEXTS, "normalize": False})
            np.testing.assert_allclose(np.array(answer.json(), dtype=np.float32), expected, atol=1e-6, rtol=0)
        for precision in ("float16", "int8", "ubinary"):
            want = model.encode(TEXTS, output_precision=precision)
            body = {"input": TEXTS, "output_precision": precision}
            floats = http.post("/v1/embeddings", json=body).json()["data"]
            assert np.array_equal(np.array([d["embedding"] for d in floats], dtype=want.dtype), want), precision
            packed = http.post("/v1/embeddings", json=body | {"encoding_format": "base64"}).json()["data"]
            dtype = want.dtype.newbyteorder("<")
            decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype=dtype) for d in packed])
            assert np.array_equal(decoded, want), precision
        for _ in range(40):
            answer = http.post("/v1/embeddings", json={"input": TEXTS[0]})
            assert answer.status_code == 200
            nodes.add(answer.headers["jina-onnx-node"])
        assert http.get("/info").json()["model_id"] == model.name
    assert nodes == {node.node_id for node in fixed.workers}, nodes


def test_bad_requests_get_the_plain_servers_answers(fixed: Cluster, artifact) -> None:  # type: ignore[no-untyped-def]
    """Every bad request of test_no_traceback.py's server table: the same status and body as `serve` alone."""
    from tests.test_server import server

    args = ["-m", str(artifact("t")), "--precision", "fp32", "--max-inputs-per-request", "8"]
    args += ["--max-request-bytes", "20000"]
    with server(*args, env={"JINA_ONNX_API_KEY": KEY}) as (plain_url, _):
        with (
            httpx.Client(base_url=plain_url, timeout=60) as plain,
            httpx.Client(base_url=fixed.url, timeout=60) as on_ray,
        ):
            for route, cases in SERVER_ROUTES.items():
                for index, (request, status, _fragment) in enumerate(cases):
                    want, got = request(plain), request(on_ray)
                    assert (got.status_code, want.status_code) == (status, status), (route, index, got.text[:300])
                    if status >= 400 and route != "GET /metrics":
                        assert got.json() == want.json(), (route, index)


def openai_load(url: str, stop_load: threading.Event, clients: int) -> tuple[list[float], list[str]]:
    """`clients` threads, each an OpenAI SDK client with its default retries, embedding until `stop_load`:
    (seconds per request, errors)."""
    from openai import OpenAI

    seconds: list[float] = []
    errors: list[str] = []

    def client_loop(index: int) -> None:
        client = OpenAI(base_url=f"{url}/v1", api_key=KEY, timeout=TIMEOUT * 2)
        while not stop_load.is_set():
            started = time.monotonic()
            try:
                client.embeddings.create(model="jina-embedding-t-en-v1", input=[f"{index} {TEXTS[index % 3]}"])
            except Exception as error:  # counted: the test asserts there is none
                errors.append(f"{type(error).__name__}: {error}"[:300])
            seconds.append(time.monotonic() - started)

    with ThreadPoolExecutor(clients) as pool:
        for index in range(clients):
            pool.submit(client_loop, index)
        stop_load.wait()
    return seconds, errors


def test_a_lost_node_loses_no_request(fixed: Cluster) -> None:
    """Under load from the OpenAI SDK, a worker node goes away and a new one joins: no request lost, none waits
    past the timeout, and the lost replica runs again on the surviving node within 30 s."""
    stop_load = threading.Event()
    results: list[Any] = []
    loader = threading.Thread(target=lambda: results.append(openai_load(fixed.url, stop_load, clients=4)))
    loader.start()
    try:
        time.sleep(2)
        lost = fixed.workers.pop()
        fixed.cluster.remove_node(lost)
        noticed = time.monotonic()
        while fixed.replicas() == {"RUNNING": 2}:  # until Ray Serve sees the replica gone
            assert time.monotonic() - noticed < 30, "the lost node's replica still counts as running after 30 s"
            time.sleep(0.1)
        back = fixed.wait_for(running=2, within=30)
        with httpx.Client(base_url=fixed.url, headers=auth(), timeout=TIMEOUT) as http:
            nodes = {http.post("/embed", json={"inputs": "x"}).headers["jina-onnx-node"] for _ in range(20)}
        assert nodes == {fixed.workers[0].node_id}, nodes  # both replicas now on the surviving node
        fixed.workers.append(fixed.cluster.add_node(num_cpus=4))
        time.sleep(2)
    finally:
        stop_load.set()
        loader.join(timeout=120)
    seconds, errors = results[0]
    assert not errors, errors[:5]
    assert len(seconds) > 20 and max(seconds) < TIMEOUT, (len(seconds), max(seconds))
    logging.getLogger(__name__).warning("replica back after %.1f s; %d requests", back, len(seconds))


def test_auto_replicas_follow_the_load(cluster: Cluster, artifact) -> None:  # type: ignore[no-untyped-def]
    """`--replicas auto` (1 to 2): 16 concurrent clients bring a second replica up on the other node (a
    replica takes 3 of a node's 4 CPUs), idle brings it back down."""
    config = WorkerConfig([str(artifact("t"))], device="cpu", precision="int8", api_key=KEY)
    scaling = Scaling(replicas=None, max_replicas=2, target_requests=2, cpus_per_replica=3)
    cluster.deploy(config, dataclasses.replace(scaling, upscale_delay_s=1, downscale_delay_s=3))
    assert cluster.replicas() == {"RUNNING": 1}
    stop_load = threading.Event()
    results: list[Any] = []
    loader = threading.Thread(target=lambda: results.append(openai_load(cluster.url, stop_load, clients=16)))
    loader.start()
    try:
        up = cluster.wait_for(running=2, within=60)
        nodes = set()
        with httpx.Client(base_url=cluster.url, headers=auth(), timeout=TIMEOUT) as http:
            for _ in range(40):
                nodes.add(http.post("/embed", json={"inputs": "x"}).headers["jina-onnx-node"])
                if len(nodes) == 2:
                    break
        assert len(nodes) == 2, nodes
    finally:
        stop_load.set()
        loader.join(timeout=120)
    assert not results[0][1], results[0][1][:5]
    down = cluster.wait_for(running=1, within=60)
    logging.getLogger(__name__).warning("second replica up after %.1f s under load, down %.1f s after", up, down)


def test_config_file_builds_the_application_and_refuses_unknown_args() -> None:
    """The example config file's import path and args build the deployment it says; wrong args are named."""
    import importlib

    import yaml

    from jina_onnx import InputError
    from jina_onnx.serve.ray import build

    config = yaml.safe_load(open("examples/ray-serve/config.yaml"))
    (entry,) = config["applications"]
    module, name = entry["import_path"].split(":")
    app = getattr(importlib.import_module(module), name)(entry["args"])
    options = app._bound_deployment._deployment_config
    assert options.autoscaling_config.max_replicas == 4 and options.max_ongoing_requests == 64
    assert app._bound_deployment.ray_actor_options["num_cpus"] == 2

    with pytest.raises(InputError, match=r"unknown args \['replica'\]"):
        build({"models": ["jina-embedding-t-en-v1"], "replica": 2})
    with pytest.raises(InputError, match="args.models must be a list"):
        build({"replicas": 2})
    app = build({"models": "jina-embedding-t-en-v1", "replicas": "auto", "limits": {"max_queue": 8}})
    options = app._bound_deployment._deployment_config  # what Ray Serve will run
    assert options.autoscaling_config.max_replicas == 2 and options.max_ongoing_requests == 64
    assert json.loads(app._bound_deployment.init_args[0])["limits"]["max_queue"] == 8
