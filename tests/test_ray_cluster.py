"""A Ray job never hangs without a word, and a local Ray listens on loopback only.

Each cluster here runs in a child process in a network namespace with only `lo` (jina_onnx.corpus.loopback),
started and stopped by the test, bounded in time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from jina_onnx.corpus import CorpusError
from jina_onnx.corpus.loopback import in_loopback_namespace, loopback_argv
from jina_onnx.corpus.progress import watch

pytest.importorskip("ray")


def isolated(argv: list[str]) -> list[str]:
    """`argv` in a loopback-only network namespace (this one, when the tests already run in one)."""
    if in_loopback_namespace():
        return argv
    wrapped = loopback_argv(argv)
    assert wrapped is not None, (
        "this machine cannot make a network namespace (unshare -rn): Ray would listen on every interface"
    )
    return wrapped


def write_texts(directory: Path, files: int, rows: int) -> Path:
    directory.mkdir(parents=True)
    for i in range(files):
        (directory / f"c{i}.txt").write_text("".join(f"text number {i}-{r} about the weather\n" for r in range(rows)))
    return directory


def test_a_stalled_job_fails_with_a_clear_error() -> None:
    never = threading.Event()
    stopped = []
    progress = iter([0, 10, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20])
    reports = []
    started = time.monotonic()
    with pytest.raises(CorpusError, match=r"made no progress for 0.3 s \(20 rows written so far\).*--stall-timeout"):
        watch(
            never.wait,
            lambda: next(progress, 20),
            stall_timeout=0.3,
            poll=0.02,
            on_stall=lambda: stopped.append(1),
            report=lambda done, seconds: reports.append(done),
        )
    assert stopped == [1] and 0.3 <= time.monotonic() - started < 5
    assert reports[:2] == [10, 20]  # progress is reported as it comes
    # Work that fails hands its error to the caller; work that ends returns its value.
    with pytest.raises(ZeroDivisionError):
        watch(lambda: 1 / 0, lambda: 0, stall_timeout=5, poll=0.01)
    assert watch(lambda: "done", lambda: 0, stall_timeout=5, poll=0.01) == "done"


LISTENERS = """
import json, os, psutil, ray
context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
mine = {os.getpid(), *(c.pid for c in psutil.Process().children(recursive=True))}
session = os.path.basename(context.address_info["session_dir"])
for p in psutil.process_iter(["pid", "cmdline"]):
    if session in " ".join(p.info["cmdline"] or []):
        mine.add(p.pid)
        mine.update(c.pid for c in p.children(recursive=True))
found = sorted({c.laddr.ip for c in psutil.net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN and c.pid in mine})
print(json.dumps(found))
ray.shutdown()
"""


def test_a_local_ray_listens_on_loopback_only() -> None:
    done = subprocess.run(isolated([sys.executable, "-c", LISTENERS]), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    addresses = json.loads(done.stdout.strip().splitlines()[-1])
    assert addresses and all(a in ("127.0.0.1", "::1", "::ffff:127.0.0.1") for a in addresses), addresses


def test_cli_workers_2_on_a_local_2_cpu_ray_refuses_within_a_minute(artifact, tmp_path: Path) -> None:
    source = write_texts(tmp_path / "in", files=4, rows=50)
    started = time.monotonic()
    # No ADDRESS: the CLI starts a local Ray itself, in its own loopback-only namespace.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "jina_onnx",
            "-q",
            "embed",
            str(source),
            str(tmp_path / "out"),
            "-m",
            str(artifact("t")),
            "--precision",
            "fp32",
            "--ray",
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - started < 60
    assert done.returncode == 1, done.stderr[-2000:]
    assert "take every CPU of this Ray cluster" in done.stderr and "--cpus-per-worker" in done.stderr
    assert not list((tmp_path / "out").glob("*.parquet"))


TWO_NODES = """
import json, sys, time
from ray.cluster_utils import Cluster
from jina_onnx.corpus import CorpusError
from jina_onnx.ray import run_corpus_job

source, out, model = sys.argv[1:4]
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
results = {}
try:
    for name, cpus in (("refused", 1.0), ("fits", 0.75)):
        started = time.monotonic()
        try:
            manifest = run_corpus_job(source, f"{out}/{name}", address=cluster.address, model=model, precision="fp32",
                                      workers=2, cpus_per_worker=cpus, threads=1, stall_timeout=50)
            results[name] = {"rows": manifest["rows"], "seconds": time.monotonic() - started}
        except CorpusError as error:
            results[name] = {"error": str(error), "seconds": time.monotonic() - started}
finally:
    import ray
    ray.shutdown()
    cluster.shutdown()
print(json.dumps(results))
"""


def test_two_node_cluster_refuses_or_finishes_within_a_minute(artifact, tmp_path: Path) -> None:
    source = write_texts(tmp_path / "in", files=4, rows=50)
    done = subprocess.run(
        isolated([sys.executable, "-c", TWO_NODES, str(source), str(tmp_path / "out"), str(artifact("t"))]),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert "take every CPU of this Ray cluster (2)" in results["refused"]["error"]
    assert results["refused"]["seconds"] < 60
    assert results["fits"].get("rows") == 200, results["fits"]
    assert results["fits"]["seconds"] < 60
