"""The side-by-side benchmark suite: one command writes JSON, Markdown and PNGs; docs/performance.md shows that JSON."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import left_to_full

from benchmarks import suite
from benchmarks.report import PERFORMANCE, published_json, render_markdown, results_block
from benchmarks.runners import RUNTIMES, RunnerSpec, Unsupported

ROOT = Path(__file__).resolve().parent.parent
EXPECTED_RUNNERS = {"torch fp32", "ST ONNX fp32", "ST ONNX int8", "fastembed fp32", "jina-onnx fp32", "jina-onnx int8"}
if suite.bf16_available():  # OpenVINO installed (the CI lock has it) on a CPU with bf16 units
    EXPECTED_RUNNERS |= {"jina-onnx bf16"}


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", header[16:24])


def test_one_command_writes_json_markdown_and_plots(
    artifact, checkpoint, minilm_artifact, tmp_path: Path, full: bool
) -> None:
    # The quick run leaves out sentence-transformers' ONNX backend (fp32 and int8): its optimum export of t
    # is a third of this test's time, and the suite handles its rows like every other runner's.
    expected = EXPECTED_RUNNERS if full else {r for r in EXPECTED_RUNNERS if not r.startswith("ST ONNX")}
    runtimes = ["--runtimes", ",".join(RUNTIMES if full else [r for r in RUNTIMES if r != "st-onnx"])]
    if not full:
        left_to_full(
            "tests/test_benchmarks.py: the suite's runners (ST ONNX left out)", len(expected), len(EXPECTED_RUNNERS)
        )
    work = tmp_path / "bench"  # seed the suite's cache with the session's exports instead of exporting again
    shutil.copytree(artifact("t"), work / "artifacts" / "jina-embedding-t-en-v1")
    shutil.copytree(minilm_artifact, work / "artifacts" / "all-MiniLM-L6-v2")
    shutil.copytree(checkpoint("t"), work / "checkpoints" / "t")
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--models", "t", "--smoke", "--out", str(out), *runtimes],
        cwd=ROOT,
        env=os.environ | {"JINA_ONNX_BENCH_HOME": str(work)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (json_path,) = out.glob("*.json")
    data = json.loads(json_path.read_text())
    model = data["models"]["t"]
    assert {label for label, s in model["runners"].items() if s["status"] == "ok"} == expected
    sections = ("short", "long", *(f"fixed128_b{batch}" for batch in suite.SMOKE.fixed_texts))
    assert set(model["throughput"]) == set(sections)
    for section in sections:
        assert set(model["throughput"][section]) == expected, section
        assert all(r["texts_per_s"] > 0 for r in model["throughput"][section].values())
        assert model["speedup_vs_torch_fp32"][section]["torch fp32"] == 1.0
    # encode / raw session for every jina-onnx runner. Smoke mode times one pass of a few texts, so only
    # presence is checked here (it read 2.3 once); --quick gave 0.87-1.01 on CPU.
    for section, results in model["throughput"].items():
        for label in ("jina-onnx fp32", "jina-onnx int8"):
            assert results[label]["efficiency"] > 0 and results[label]["raw_texts_per_s"] > 0, section
        assert not any("efficiency" in r for label, r in results.items() if not label.startswith("jina-onnx"))
    assert model["workloads"]["fixed128_b32"]["tokens"] == 32 * 128  # exact-length texts really are 128 tokens
    assert 400 * 2 <= model["workloads"]["long"]["tokens"] <= 511 * 2  # two passages of 400-511 tokens
    assert set(model["latency"]) == expected
    assert all("peak_rss_mb" in model["cold_start"][label] for label in expected), model["cold_start"]
    quality = model["quality_vs_torch_fp32"]
    assert quality["jina-onnx fp32"]["min_cosine"] > 0.99999 and quality["fastembed fp32"]["min_cosine"] > 0.99999
    assert quality["jina-onnx int8"]["min_cosine"] > 0.99
    minilm = data["minilm"]["runners"]
    assert abs(minilm["jina-onnx fp32"]["spearman"] - minilm["torch fp32"]["spearman"]) < 0.01
    markdown = (out / f"{data['stem']}.md").read_text()
    assert markdown == render_markdown(data, heading="#")
    assert all(f"| t | {label} |" in markdown for label in expected)
    assert "Efficiency: texts/s through `encode`" in markdown and "| t | jina-onnx int8 | " in markdown
    if "jina-onnx bf16" in expected:  # the OpenVINO rows: headline columns and the options table
        assert "bf16 (OpenVINO) vs torch fp32" in markdown and "| OpenVINO | bf16 | " in markdown
        assert model["runners"]["ST OpenVINO default"]["status"] == "unsupported"  # optimum-intel: not in the lock
    for kind in ("throughput", "batch-speedup", "quality-speed"):
        width, height = png_size(out / f"{data['stem']}-{kind}.png")
        assert width > 600 and height > 300


def fake_encoder(dim: int, fail: bool = False):  # type: ignore[no-untyped-def]
    def encode(texts: list[str], batch_size: int, token_budget: int | None = None) -> np.ndarray:
        if fail:
            raise RuntimeError("kernel missing")
        return np.stack([np.random.default_rng(len(t)).standard_normal(dim) for t in texts]).astype(np.float32)

    return encode


class FakeRunner:
    """RemoteRunner's interface in this process, so the suite's bookkeeping can be tested without models."""

    def __init__(self, spec: RunnerSpec) -> None:
        if spec.runtime == "st-onnx":
            raise Unsupported("ValueError: Input decoder_input_ids is required by model but not provided.")
        self.encode, self.seconds = fake_encoder(8, fail=spec.runtime == "fastembed"), 0.0

    @staticmethod
    def prepare(spec: RunnerSpec) -> None:
        pass

    def __call__(self, texts: list[str], batch_size: int, token_budget: int | None = None) -> np.ndarray:
        self.seconds = 1e-3
        return self.encode(texts, batch_size, token_budget)

    def close(self) -> None:
        pass


def test_unsupported_and_failing_baselines_are_reported_not_fatal(t_model, monkeypatch) -> None:
    monkeypatch.setattr(suite, "RemoteRunner", FakeRunner)
    monkeypatch.setattr(suite, "tokenizer_for", lambda model: t_model.tokenizer)
    monkeypatch.setattr(suite, "cold_start", lambda spec, workloads, repeats: {"total_s": 1.0, "peak_rss_mb": 2.0})
    monkeypatch.setattr(suite, "SETTLE_S", 0)
    result = suite.benchmark_model(
        "t", "cpu", ("fp32",), ("torch", "st-onnx", "fastembed", "jina-onnx"), 1, suite.SMOKE
    )
    status = result["runners"]
    assert status["ST ONNX fp32"]["status"] == "unsupported" and "decoder_input_ids" in status["ST ONNX fp32"]["reason"]
    assert status["fastembed fp32"] == status["fastembed fp32"] | {
        "status": "failed",
        "reason": "RuntimeError: kernel missing",
    }
    assert set(result["throughput"]["short"]) == {"torch fp32", "jina-onnx fp32"}
    assert result["quality_vs_torch_fp32"]["jina-onnx fp32"]["min_cosine"] > 0.999999  # same fake vectors
    data = {
        "models": {"t": result},
        "minilm": {"pairs": 0, "runners": {}},
        "settings": suite.SMOKE.__dict__,
        "machine": {"date": "2026-11-26", "cpu": "test", "physical_cores": 1, "cpu_flags": [], "onnxruntime": "x"},
        "machine_name": "cpu-test-1c",
        "device": "cpu",
        "threads": 1,
        "mode": "smoke",
        "command": "python -m benchmarks run",
        "wall_s": 1.0,
        "stem": "cpu-test",
    }
    markdown = render_markdown(data)
    assert "| t | ST ONNX fp32 | unsupported: ValueError: Input decoder_input_ids" in markdown
    assert "| t | fastembed fp32 | failed: RuntimeError: kernel missing" in markdown


def test_performance_page_shows_the_named_json() -> None:
    json_path = published_json()
    assert json_path is not None and json_path.is_file(), "docs/performance.md has no block naming a results JSON"
    text = PERFORMANCE.read_text()
    assert results_block(json_path) in text, (
        "docs/performance.md's results differ from its JSON: run "
        f"python -m benchmarks publish {json_path.relative_to(ROOT)}"
    )
    data = json.loads(json_path.read_text())
    assert data["machine"]["cpu"] in text and data["mode"] == "full"
    for kind in ("throughput", "batch-speedup", "quality-speed"):
        assert png_size(json_path.parent / f"{data['stem']}-{kind}.png")[0] > 600


def test_bad_arguments_and_a_missing_gpu_are_refused_up_front() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "benchmarks", "run", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
        )

    done = run("--models", "t,xl")
    assert done.returncode != 0 and "unknown model xl; choose from t, s, b, l" in done.stderr
    done = run("--precisions", "int4")
    assert done.returncode != 0 and "unknown precision int4" in done.stderr
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        done = run("--device", "cuda", "--models", "t")
        assert done.returncode != 0 and "--device cuda needs onnxruntime-gpu" in done.stderr


def test_unsupported_verdict_holds_only_for_the_versions_that_gave_it(monkeypatch, tmp_path: Path) -> None:
    import json
    import types

    from benchmarks import runners

    monkeypatch.setattr(runners, "WORK", tmp_path)
    calls = []

    class Broken:
        def __init__(self, *args, **kwargs) -> None:
            calls.append(1)
            raise ValueError("still cannot run it")

    monkeypatch.setitem(
        sys.modules,
        "sentence_transformers",
        types.SimpleNamespace(SentenceTransformer=Broken, export_dynamic_quantized_onnx_model=None),
    )
    spec = runners.RunnerSpec("st-onnx", "fp32", "minilm", "cpu", 1)
    verdict = tmp_path / "st-onnx" / "minilm" / "UNSUPPORTED.json"
    with pytest.raises(runners.Unsupported, match="still cannot run it"):
        runners.prepare(spec)
    assert json.loads(verdict.read_text())["versions"] == runners.baseline_versions() and len(calls) == 1
    with pytest.raises(runners.Unsupported):
        runners.prepare(spec)  # same versions: the cached verdict, no second attempt
    assert len(calls) == 1
    verdict.write_text(json.dumps({"reason": "old", "versions": {"optimum": "0.0.1"}}))
    with pytest.raises(runners.Unsupported, match="still cannot run it"):
        runners.prepare(spec)  # other versions: tried again, and the verdict re-recorded for these
    assert len(calls) == 2 and json.loads(verdict.read_text())["reason"].startswith("ValueError")
    monkeypatch.setattr(runners, "RETRY_UNSUPPORTED", True)
    with pytest.raises(runners.Unsupported):
        runners.prepare(spec)
    assert len(calls) == 3


def test_cuda_headline_compares_fp16_with_torch_fp16_and_shows_efficiency() -> None:
    from benchmarks.report import render_markdown

    def result(rate: float, efficiency: float | None = None) -> dict:
        r = {"texts_per_s": rate, "texts_per_s_min": rate, "texts_per_s_max": rate}
        return r | ({"efficiency": efficiency, "raw_texts_per_s": rate / efficiency} if efficiency else {})

    labels = ["torch fp32", "torch fp16", "jina-onnx fp32", "jina-onnx fp16"]
    sections = {
        "short_b256": {
            name: result(1000.0 * (i + 1), 0.9 if "jina" in name else None) for i, name in enumerate(labels)
        },
        "long": {name: result(10.0 * (i + 1)) for i, name in enumerate(labels)},
        "fixed128_b256": {name: result(100.0 * (i + 1)) for i, name in enumerate(labels)},
    }
    data = {
        "settings": {"rounds": 3, "short_texts": 512, "long_texts": 24, "cold_repeats": 1, "fixed_texts": {"256": 1}},
        "machine_name": "cuda-h100",
        "device": "cuda",
        "threads": 16,
        "mode": "full",
        "command": "x",
        "wall_s": 60,
        "stem": "x",
        "machine": {
            "date": "2026-11-27",
            "onnxruntime": "1.31.1",
            "cpu": "cpu",
            "physical_cores": 16,
            "cpu_flags": [],
            "gpu": "NVIDIA H100",
            "gpu_memory": "80 GB",
        },
        "models": {
            "l": {
                "runners": {name: {"status": "ok"} for name in labels},
                "throughput": sections,
                "speedup_vs_torch_fp32": {},
                "latency": {},
                "cold_start": {},
                "quality_vs_torch_fp32": {},
            }
        },
        "minilm": {"pairs": 0, "runners": {}},
    }
    text = render_markdown(data)
    assert "| model | fp16 vs torch fp16 | fp16 vs torch fp32 |" in text and "int8 vs torch fp32" not in text
    assert "| l | 2.00x / 2.00x / 2.00x | 4.00x / 4.00x / 4.00x |" in text  # fp16 4000 vs torch fp16 2000
    assert (
        "| short, batch 256 | long | 128 tokens, batch 256 |" in text
        and "| l | jina-onnx fp16 | 0.90 (4,444/s raw)" in text
    )


def test_each_runner_has_its_own_process_and_a_crash_is_reported(artifact, tmp_path: Path, monkeypatch) -> None:
    work = tmp_path / "bench"
    shutil.copytree(artifact("t"), work / "artifacts" / "jina-embedding-t-en-v1")
    monkeypatch.setenv("JINA_ONNX_BENCH_HOME", str(work))  # read by the runner processes
    monkeypatch.setattr(suite, "SETTLE_S", 0)
    specs = [RunnerSpec("jina-onnx", precision, "t", "cpu", 1) for precision in ("fp32", "int8")]
    _, encoders, status = suite.start_runners(specs)
    try:
        pids = {label: encode._process.pid for label, encode in encoders.items()}
        assert len(set(pids.values()) | {os.getpid()}) == 3  # two children, none of them us
        texts = ["how is the weather today", "What is the current weather like today?"]
        samples, outputs = suite.timed_rounds(encoders, texts, 2, None, 1, status)
        assert set(samples) == set(pids) and all(s[0] > 0 for s in samples.values())
        assert outputs["jina-onnx fp32"].shape == (2, 312)
        assert set(suite.raw_rounds(encoders, texts, 2, None, 1)) == set(pids)  # the raw ceiling crosses too
        # What the out-of-memory killer does, in the middle of the timed rounds (after the warm-up).
        killed: list[int] = []

        def kill_once() -> None:
            if not killed:
                killed.append(pids["jina-onnx int8"])
                os.kill(pids["jina-onnx int8"], signal.SIGKILL)

        monkeypatch.setattr(suite, "settle", kill_once)
        samples, _ = suite.timed_rounds(encoders, texts, 2, None, 2, status)
        assert set(samples) == {"jina-onnx fp32"} and len(samples["jina-onnx fp32"]) == 2  # the rest go on
        assert set(encoders) == {"jina-onnx fp32"}
        assert status["jina-onnx int8"]["status"] == "failed"
        assert "process died (killed by signal SIGKILL)" in status["jina-onnx int8"]["reason"]
    finally:
        suite.close(encoders)
    assert not any(
        Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()
        for pid in pids.values()
    )


def test_memory_command_measures_each_runner_in_its_own_process(artifact, tmp_path: Path) -> None:
    from benchmarks.memory import ROWS

    work = tmp_path / "bench"  # the session's export of t, as the suite's cache would hold it
    shutil.copytree(artifact("t"), work / "artifacts" / "jina-embedding-t-en-v1")
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "memory", "--models", "t", "--texts", "20", "--repeats", "1"]
        + ["--out", str(out)],
        cwd=ROOT,
        env=os.environ | {"JINA_ONNX_BENCH_HOME": str(work)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (json_path,) = out.glob("memory-*.json")
    data = json.loads(json_path.read_text())
    rows = data["models"]["t"]["rows"]
    assert list(rows) == [row.label for row in ROWS]
    for label, row in rows.items():
        assert all(row[metric] > 0 for metric in ("import_s", "load_s", "first_encode_s", "rss_load_mb")), label
        assert row["rss_start_mb"] < row["rss_load_mb"] <= row["peak_rss_mb"], label
        assert row["rss_encoded_mb"] <= row["peak_rss_mb"] and row["peak_load_mb"] <= row["peak_rss_mb"], label
    first, cached = rows["jina-onnx auto, first load"]["processes"][0], rows["jina-onnx auto, cached"]["processes"][0]
    assert not first["speeds_cached_before"] and first["speeds_cached_after"]  # it measured, then cached
    assert cached["speeds_cached_before"]  # the second process found that cache
    assert not rows["jina-onnx int8"]["processes"][0]["speeds_cached_after"]  # a named precision never measures
    same_file = {rows[label]["runs"]["file"] for label in ("jina-onnx fp32", "fastembed fp32", "ST ONNX fp32")}
    assert same_file == {"onnx/model.onnx"}
    markdown = (out / json_path.name.replace(".json", ".md")).read_text()
    assert "| RSS after load MB | RSS after 20 texts MB | peak RSS MB |" in markdown
    assert all(f"| jina-embedding-t-en-v1 | {row.label} | " in markdown for row in ROWS)
    assert data["machine"]["cpu"] in markdown


def test_gemm_ceiling_times_each_precision_and_weighs_a_models_shapes(monkeypatch) -> None:
    from benchmarks import ceiling

    monkeypatch.setattr(ceiling, "ROWS", 64)  # the graphs and their timing, on small products
    for precision in ("fp32", "int8"):
        assert ceiling.gemm_gflops(64, 96, precision, threads=1, repeats=2) > 0
    # t: 16 products of 312 x 312 and 4 each of 312 x 1200 and 1200 x 312 per pass.
    assert ceiling.weight_products("t") == [(312, 312, 16), (312, 1200, 4), (1200, 312, 4)]
    assert ceiling.weight_flops("t", rows=1) == 2 * (312 * 312 * 16 + 2 * 312 * 1200 * 4)
    # The ceiling of a mix is its FLOPs over the time of each part at its own speed (a harmonic mean).
    speeds = {(312, 312): 100.0, (312, 1200): 400.0, (1200, 312): 400.0}
    flops = {shape: 2 * k * n * count for (k, n, count), shape in zip(ceiling.weight_products("t"), speeds)}
    expected = sum(flops.values()) / sum(flops[shape] / speeds[shape] for shape in speeds)
    assert ceiling.model_ceiling("t", speeds) == pytest.approx(expected)
