"""The OpenVINO backend: fp32 parity with ONNX Runtime, the bf16 gate, backend="auto", threads, errors."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

from jina_onnx import ArtifactError, DeviceError, InputError, MissingDependencyError, build_model
from jina_onnx.batching import bucket_length
from jina_onnx.engines import checks as backends
from jina_onnx.engines import openvino as openvino_backend
from jina_onnx.engines.checks import CHECKS_FILE
from jina_onnx.registry import home_dir

TEXTS = [
    "how is the weather today",
    "What is the current weather like today?",
    "A man is playing a guitar.",
    "",
    "Ünïcödé façade – naïve café 😀",
    "The quick brown fox jumps over the lazy dog. " * 60,
]
BF16 = openvino_backend.cpu_has_bf16()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(autouse=True)
def _auto_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(backends.ENV, raising=False)  # conftest pins ONNX Runtime for the other tests


@pytest.mark.parametrize("size", ["t", "s"])  # BERT and T5
def test_fp32_matches_onnxruntime(artifact, size: str) -> None:
    reference = build_model(artifact(size), device="cpu", precision="fp32", backend="onnxruntime")
    model = build_model(artifact(size), device="cpu", precision="fp32", backend="openvino")
    assert (model.backend, model.precision, model.device) == ("openvino", "fp32", "cpu")
    assert model.onnx_path.name == "model_cpu_fused.onnx"  # ONNX Runtime's fused graph, read by OpenVINO
    with pytest.warns(Warning):  # the long text is truncated, as with ONNX Runtime
        ours = model.encode(TEXTS)
    with pytest.warns(Warning):
        theirs = reference.encode(TEXTS)
    assert ours.shape == theirs.shape == (len(TEXTS), model.dim) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
    # Same order, same batching logic: a shuffled call gives the same rows.
    order = np.random.default_rng(0).permutation(len(TEXTS) - 1)
    shuffled = model.encode([TEXTS[i] for i in order])
    np.testing.assert_allclose(shuffled, ours[order], atol=1e-5, rtol=0)


def test_batches_cut_across_streams_give_the_same_rows(artifact, tmp_path) -> None:
    directory = shutil.copytree(artifact("t"), tmp_path / "t")
    model = build_model(directory, device="cpu", precision="fp32", backend="openvino", threads=2)
    assert model.session.streams == 2  # two cores: one stream each
    texts = [f"sentence {i} about {'the weather ' * (i % 13)}" for i in range(41)]  # 32 + 9: both cut, unevenly
    bulk = model.encode(texts, batch_size=32)  # cut across both streams
    assert model.session._small is None  # bulk work never compiles the single-stream model
    np.testing.assert_allclose(
        bulk,
        build_model(directory, device="cpu", precision="fp32", backend="onnxruntime").encode(texts),
        atol=1e-4,
        rtol=0,
    )
    # A lone text runs whole on the single-stream compile, which reads the file again: a file changed
    # since loading is refused there, never used.
    onnx = model.onnx_path
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    with pytest.raises(ArtifactError, match="changed on disk since it was loaded"):
        model.encode(texts[:1])
    fresh = build_model(artifact("t"), device="cpu", precision="fp32", backend="openvino", threads=2)
    alone = np.concatenate([fresh.encode([text]) for text in texts[:9]])
    np.testing.assert_allclose(alone, bulk[:9], atol=1e-5, rtol=0)
    one_thread = build_model(artifact("t"), device="cpu", precision="fp32", backend="openvino", threads=1)
    assert one_thread.session.streams == 1 and one_thread.session._small is one_thread.session._bulk
    np.testing.assert_allclose(one_thread.encode(texts), bulk, atol=1e-5, rtol=0)


def test_openvino_sees_few_input_shapes(artifact) -> None:
    # OpenVINO keeps kernels for every input shape it meets (RSS grew ~1.3 MB per new shape), so rows are
    # padded to a few sizes and lone texts to the width buckets; the filler changes no real row.
    model = build_model(artifact("t"), device="cpu", precision="fp32", backend="openvino", threads=2)
    reference = build_model(artifact("t"), device="cpu", precision="fp32", backend="onnxruntime")
    seen: set[tuple[int, ...]] = set()
    real_run = model.session._run

    def spy(names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        seen.add(feed["input_ids"].shape)
        return real_run(names, feed)

    model.session._run = spy
    rng = np.random.default_rng(0)
    for size in (1, 1, 5, 7, 9, 13, 19, 23, 29, 31):
        texts = [" ".join(["word"] * int(n)) for n in rng.integers(1, 300, size=size)]
        np.testing.assert_allclose(model.encode(texts), reference.encode(texts), atol=1e-4, rtol=0)
    assert {rows for rows, _ in seen} <= {1, 2, 3, 4, 6, 8, 12, 16, 24, 32}
    assert {width for _, width in seen} <= {bucket_length(n, 512) for n in range(1, 513)}
    assert [openvino_backend.row_bucket(n) for n in (1, 3, 5, 7, 9, 17, 25, 33)] == [1, 3, 6, 8, 12, 24, 32, 48]


def test_bf16_passes_its_gate_and_is_recorded_at_export(artifact, monkeypatch: pytest.MonkeyPatch) -> None:
    if not BF16:  # a CPU without bf16 units: refused, and the export recorded nothing
        with pytest.raises(DeviceError, match="no bf16 units"):
            build_model(artifact("s"), device="cpu", precision="bf16", backend="openvino")
        assert "openvino" not in json.loads((artifact("s") / "manifest.json").read_text())["extra"]
        return
    manifest = json.loads((artifact("s") / "manifest.json").read_text())
    recorded = manifest["extra"]["openvino"]["bf16"]
    assert recorded["passed"] and recorded["parity"]["min_cosine"] >= 0.999
    assert recorded["file"] == "onnx/model_cpu_fused.onnx"  # checked on the graph OpenVINO runs
    # The export's record is used: loading runs no probe.
    monkeypatch.setattr(backends, "bf16_check", lambda *a, **k: pytest.fail("the manifest's verdict was ignored"))
    model = build_model(artifact("s"), device="cpu", precision="bf16", backend="openvino")
    assert model.precision == "bf16"
    reference = build_model(artifact("s"), device="cpu", precision="fp32", backend="onnxruntime")
    assert cosines(model.encode(TEXTS[:5]), reference.encode(TEXTS[:5])).min() >= 0.999


@pytest.mark.skipif(not BF16, reason="needs bf16 units")
def test_bf16_gate_runs_at_first_load_and_is_cached(artifact, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = shutil.copytree(artifact("t"), tmp_path / "t")  # the shared artifact stays as exported
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["extra"].pop("openvino", None)  # as exported where OpenVINO was not installed
    (directory / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("JINA_ONNX_HOME", str(tmp_path / "home"))
    calls = []
    real = backends.bf16_check
    monkeypatch.setattr(backends, "bf16_check", lambda *a: calls.append(1) or real(*a))
    build_model(directory, device="cpu", precision="bf16", backend="openvino")
    build_model(directory, device="cpu", precision="bf16", backend="openvino")
    assert calls == [1]  # measured once, then read from the cache
    cached = json.loads((tmp_path / "home" / CHECKS_FILE).read_text())["gates"]
    (verdict,) = cached.values()
    assert verdict["passed"] and verdict["parity"]["min_cosine"] >= 0.999


@pytest.mark.skipif(not BF16, reason="needs bf16 units")
def test_bf16_that_misses_its_gate_is_never_used(
    artifact, tmp_path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    directory = shutil.copytree(artifact("t"), tmp_path / "t")  # the shared artifact stays as exported
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["extra"].pop("openvino", None)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("JINA_ONNX_HOME", str(tmp_path))
    real = backends.bf16_check

    def worse(*args):  # what a CPU whose bf16 loses too much would measure
        found = real(*args)
        found["parity"]["min_cosine"] = 0.95
        return found

    monkeypatch.setattr(backends, "bf16_check", worse)
    with pytest.raises(ArtifactError, match=r"misses its gate .*min_cosine 0\.950000 < 0\.999.*precision='fp32'"):
        build_model(directory, device="cpu", precision="bf16", backend="openvino")
    with caplog.at_level(logging.INFO, logger="jina_onnx"):
        model = build_model(directory, device="cpu", precision="auto", backend="openvino")
    assert model.precision == "fp32"
    assert "bf16 misses its gate" in caplog.text


def test_plain_graph_where_the_fused_one_is_absent_or_unreadable(
    artifact, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    reference = build_model(artifact("t"), device="cpu", precision="fp32", backend="onnxruntime").encode(TEXTS[:5])
    # Exported without --optimize: no fused graph, OpenVINO runs model.onnx.
    plain = shutil.copytree(artifact("t"), tmp_path / "plain")
    manifest = json.loads((plain / "manifest.json").read_text())
    del manifest["variants"]["fp32-opt"]
    (plain / "manifest.json").write_text(json.dumps(manifest))
    model = build_model(plain, device="cpu", precision="fp32", backend="openvino")
    assert model.onnx_path.name == "model.onnx"
    np.testing.assert_allclose(model.encode(TEXTS[:5]), reference, atol=1e-4, rtol=0)
    # A fused graph this OpenVINO cannot read (checksum intact): model.onnx runs, and the log says why.
    unreadable = shutil.copytree(artifact("t"), tmp_path / "unreadable")
    (unreadable / "onnx" / "model_cpu_fused.onnx").write_bytes(b"not an onnx graph")
    manifest = json.loads((unreadable / "manifest.json").read_text())
    manifest["variants"]["fp32-opt"]["sha256"] = hashlib.sha256(b"not an onnx graph").hexdigest()
    (unreadable / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.INFO, logger="jina_onnx"):
        model = build_model(unreadable, device="cpu", precision="fp32", backend="openvino")
    assert model.onnx_path.name == "model.onnx"
    assert (
        "model_cpu_fused.onnx: OpenVINO cannot load it" in caplog.text and "runs onnx/model.onnx instead" in caplog.text
    )
    np.testing.assert_allclose(model.encode(TEXTS[:5]), reference, atol=1e-4, rtol=0)
    # A fused graph that changed on disk is refused, not swapped for the plain one.
    (unreadable / "onnx" / "model_cpu_fused.onnx").write_bytes(b"changed")
    with pytest.raises(ArtifactError, match="model_cpu_fused.onnx"):
        build_model(unreadable, device="cpu", precision="fp32", backend="openvino")


def test_auto_without_openvino_uses_onnxruntime(artifact, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now fails, as when not installed
    monkeypatch.setattr(openvino_backend, "installed", lambda: False)
    openvino_backend.core.cache_clear()
    try:
        model = build_model(artifact("t"), device="cpu")
        assert model.backend == "onnxruntime"
        with pytest.raises(MissingDependencyError, match=r'pip install "jina-onnx\[openvino\]"'):
            build_model(artifact("t"), device="cpu", backend="openvino")
    finally:
        openvino_backend.core.cache_clear()


@pytest.mark.parametrize(("faster", "expected"), [("openvino", "openvino"), ("onnxruntime int8", "onnxruntime")])
def test_auto_measures_once_picks_the_faster_and_logs_it(
    artifact, tmp_path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, faster, expected
) -> None:
    monkeypatch.setenv("JINA_ONNX_HOME", str(tmp_path))
    measured = []

    def stub(models, objective):  # reports speeds instead of timing: the faster engine is the parameter
        measured.append([(m.backend, m.precision) for m in models])
        return [300.0 if f"{m.backend} {m.precision}".startswith(faster) else 100.0 for m in models]

    monkeypatch.setattr(backends, "measure", stub)
    with caplog.at_level(logging.INFO, logger="jina_onnx"):
        model = build_model(artifact("t"), device="cpu")
    assert model.backend == expected
    assert all(len(models) == 1 for models in measured)  # one candidate in memory at a time
    candidates = [candidate for (candidate,) in measured]
    assert ("onnxruntime", "int8") in candidates and ("onnxruntime", "fp32-opt") in candidates
    assert any(engine == "openvino" for engine, _ in candidates)
    assert f"jina-embedding-t-en-v1 runs {model.backend} {model.precision} on cpu" in caplog.text
    assert "fastest for throughput on this machine" in caplog.text
    speeds = json.loads((tmp_path / CHECKS_FILE).read_text())["speeds"]
    assert len(speeds) == len(candidates) and set(speeds.values()) == {100.0, 300.0}
    # The verdict is cached: a second load measures nothing and gets the same engine.
    again = build_model(artifact("t"), device="cpu")
    assert again.backend == expected and len(measured) == len(candidates)
    # An explicit ONNX Runtime-only precision never involves OpenVINO.
    assert build_model(artifact("t"), device="cpu", precision="fp32-opt").backend == "onnxruntime"


def test_real_measurement_gives_positive_speeds(artifact) -> None:
    ort = build_model(artifact("t"), device="cpu", precision="fp32", backend="onnxruntime")
    ov = build_model(artifact("t"), device="cpu", precision="fp32", backend="openvino")
    for objective in ("throughput", "latency"):
        a, b = backends.measure([ort, ov], objective, rounds=1)
        assert a > 0 and b > 0


def test_env_variable_sets_the_default(artifact, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backends.ENV, "openvino")
    assert build_model(artifact("t"), device="cpu", precision="fp32").backend == "openvino"
    monkeypatch.setenv(backends.ENV, "tensorrt")
    with pytest.raises(InputError, match=r"\$JINA_ONNX_BACKEND='tensorrt' is not one of auto, onnxruntime, openvino"):
        build_model(artifact("t"), device="cpu")


def test_threads_share_one_model(artifact) -> None:
    model = build_model(artifact("s"), device="cpu", precision="fp32", backend="openvino")
    texts = [f"sentence number {i} about {'weather ' * (i % 9)}" for i in range(64)]
    expected = model.encode(texts)
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for _ in range(3):
                results[k] = model.encode(texts[k::4], batch_size=4)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and len(results) == 4
    for k in range(4):
        np.testing.assert_allclose(results[k], expected[k::4], atol=1e-5, rtol=0)


def test_first_calls_from_many_threads_do_not_deadlock(artifact) -> None:
    # OpenVINO's binding initializes C++ statics on the first infer; threads racing there deadlocked
    # 1 run in 5 (8 threads, 3 texts each) before OpenVINOSession made the first inference itself. A race:
    # this guard catches a regression often, not always. Each run is a fresh process.
    script = (
        "import sys, threading; from jina_onnx import build_model; sys.setswitchinterval(1e-6)\n"
        "m = build_model(sys.argv[1], device='cpu', precision='fp32', backend='openvino')\n"
        "ts = [threading.Thread(target=m.encode, args=([f'text {i}' * (k + 1) for i in range(n)],))\n"
        "      for k in range(8) for n in (3, 20)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]; print('done')\n"
    )
    for _ in range(3):
        run = subprocess.run(
            [sys.executable, "-c", script, str(artifact("t"))], capture_output=True, text=True, timeout=120, check=False
        )
        assert run.returncode == 0 and run.stdout.strip() == "done", run.stderr[-2000:]


def test_bad_requests_name_the_fix(artifact) -> None:
    with pytest.raises(InputError, match="backend='gpu' is not one of auto, onnxruntime, openvino"):
        build_model(artifact("t"), device="cpu", backend="gpu")
    with pytest.raises(InputError, match=r"precision='int8' is an ONNX Runtime variant.*backend='onnxruntime'"):
        build_model(artifact("t"), device="cpu", precision="int8", backend="openvino")
    with pytest.raises(InputError, match="precision='bf16' runs on OpenVINO"):
        build_model(artifact("t"), device="cpu", precision="bf16", backend="onnxruntime")
    with pytest.raises(DeviceError, match="backend='openvino' runs on the CPU"):
        build_model(artifact("t"), device="cuda", backend="openvino")


def test_cli_runs_openvino(artifact, capsys: pytest.CaptureFixture[str]) -> None:
    from jina_onnx.cli import main

    assert (
        main(
            [
                "-q",
                "similarity",
                "-m",
                str(artifact("t")),
                "--backend",
                "openvino",
                "--precision",
                "fp32",
                "how is the weather today",
                "What is the current weather like today?",
            ]
        )
        == 0
    )
    openvino_value = float(capsys.readouterr().out.strip().split()[-1])
    assert (
        main(
            [
                "-q",
                "similarity",
                "-m",
                str(artifact("t")),
                "--backend",
                "onnxruntime",
                "--precision",
                "fp32",
                "how is the weather today",
                "What is the current weather like today?",
            ]
        )
        == 0
    )
    assert abs(float(capsys.readouterr().out.strip().split()[-1]) - openvino_value) < 1e-4


def test_home_dir_holds_the_cache(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JINA_ONNX_HOME", str(tmp_path))
    backends.store_speeds(home_dir(), {"openvino bf16": "k"}, {"openvino bf16": 123.4})
    assert backends.cached_speeds(home_dir(), {"openvino bf16": "k", "onnxruntime int8": "j"}) == {
        "openvino bf16": 123.4
    }
    (tmp_path / CHECKS_FILE).write_text("{half a file")  # a crash mid-write by an older version: measure again
    assert backends.cached_speeds(home_dir(), {"openvino bf16": "k"}) == {}


def test_ray_runner_refuses_openvino(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from jina_onnx.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one\ntwo\n")
    assert main(["-q", "embed", str(corpus), str(tmp_path / "out"), "--ray", "--backend", "openvino"]) == 1
    assert "--ray runs ONNX Runtime" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
