"""The `jina-onnx` command line, in-process and as the installed console script."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jina_onnx import build_model, cos_sim
from jina_onnx.cli import main
from jina_onnx.manifest import load_manifest

SEED = ["how is the weather today", "What is the current weather like today?"]


def test_models(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for size, dims in zip("tsbl", (312, 512, 768, 1024)):
        assert f"jina-embedding-{size}-en-v1" in out and str(dims) in out


def test_similarity_prints_the_cosine(artifact, capsys) -> None:
    assert main(["-q", "similarity", "-m", str(artifact("t")), *SEED]) == 0
    printed = float(capsys.readouterr().out.strip())
    model = build_model(artifact("t"))
    assert printed == pytest.approx(cos_sim(*model.encode(SEED)), abs=1e-6)


def test_encode_arguments_to_json_lines(artifact, capsys) -> None:
    assert main(["-q", "encode", "-m", str(artifact("t")), *SEED]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == SEED
    expected = build_model(artifact("t")).encode(SEED)
    assert np.abs(np.array([r["embedding"] for r in rows]) - expected).max() < 1e-6


def test_encode_stdin_to_npy(artifact, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(SEED) + "\n"))
    out = tmp_path / "vectors.npy"
    assert main(["-q", "encode", "-m", str(artifact("t")), "--normalize", "-o", str(out)]) == 0
    vectors = np.load(out)
    assert vectors.shape == (2, 312)
    assert np.allclose(vectors, build_model(artifact("t")).encode(SEED, normalize=True), atol=1e-6)


def test_export_command(checkpoint, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli-artifact"
    assert main(["export", str(checkpoint("t")), "--out", str(out), "--name", "tiny"]) == 0  # as a user runs it
    said = capsys.readouterr()
    assert said.out.strip() == str(out)
    assert "jina-onnx: quantizing to int8" in said.err  # each long step says what it does
    assert sorted(load_manifest(out).variants) == ["fp16", "fp32", "fp32-opt", "int8"]  # no --precision: all four
    assert build_model(out).name == "tiny"
    assert main(["-q", "export", str(checkpoint("t")), "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_user_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    cli = shutil.which("jina-onnx", path=str(Path(sys.executable).parent))
    assert cli, "the jina-onnx console script is not installed next to this python"
    env = {"JINA_ONNX_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [cli, "similarity", "-m", "jina-embedding-s-en-v1", "a", "b"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"jina-onnx: error: model 'jina-embedding-s-en-v1' is not exported yet (looked in "
        f"{tmp_path / 'jina-embedding-s-en-v1'}); run: jina-onnx export jinaai/jina-embedding-s-en-v1"
    ]
    assert "Traceback" not in result.stderr


def test_bad_cli_usage_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["similarity", "only-one-text"])
    assert info.value.code == 2


def test_closed_pipe_ends_quietly_with_status_0(artifact) -> None:
    # `jina-onnx encode ... | head -1`: the reader closes the pipe after one line.
    texts = [f"sentence number {i}" for i in range(400)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "jina_onnx", "-q", "encode", "-m", str(artifact("t")), "--device", "cpu", *texts],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first = proc.stdout.readline()  # type: ignore[union-attr]
    proc.stdout.close()  # type: ignore[union-attr]
    _, stderr = proc.communicate(timeout=120)
    assert json.loads(first)["text"] == "sentence number 0"
    assert proc.returncode == 0 and b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr


def test_an_unknown_model_name_is_not_sent_to_export(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("JINA_ONNX_HOME", str(tmp_path))
    assert main(["encode", "-m", "jina-embedding-x-en-v1", "a text"]) == 1
    err = capsys.readouterr().err
    assert "'jina-embedding-x-en-v1' is not a known model name" in err and "did you mean 'jina-embedding-" in err
    assert "jina-embedding-t-en-v1, jina-embedding-s-en-v1" in err and "Traceback" not in err
    assert "run: jina-onnx export jina-embedding-x-en-v1" not in err  # the old hint, which failed in its turn


def test_exit_codes_are_the_documented_ones(capsys) -> None:
    from jina_onnx.cli import EXIT_CODES

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    with pytest.raises(SystemExit) as usage:
        main(["encode", "--no-such-option"])
    assert usage.value.code == 2 and "unrecognized arguments: --no-such-option" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--help"])
    assert EXIT_CODES in capsys.readouterr().out
    for code in ("0 success", "1 a user error", "2 a wrong option", "3 the Hub", "130 interrupted"):
        assert code in readme


def test_a_first_load_that_measures_says_so_in_one_line(artifact, tmp_path: Path) -> None:
    """Python shows it with no logging set up; a load that reuses the measurement, and `jina-onnx -q`, do not."""
    code = f"from jina_onnx import build_model; build_model({str(artifact('t'))!r}, device='cpu')"
    env = {**os.environ, "JINA_ONNX_HOME": str(tmp_path / "home")}

    def stderr(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=True).stderr

    first = stderr(sys.executable, "-c", code)
    assert [line for line in first.splitlines() if line.strip()] == [first.strip()], first
    assert first.startswith("jina-onnx: measuring onnxruntime int8 on cpu vs ") and "to pick the fastest" in first
    assert stderr(sys.executable, "-c", code) == ""
    env["JINA_ONNX_HOME"] = str(tmp_path / "other-home")
    assert stderr(sys.executable, "-m", "jina_onnx", "-q", "encode", "-m", str(artifact("t")), "a") == ""
    # `jina-onnx prepare` measures ahead of time (a container's build step): the first use then measures nothing.
    env["JINA_ONNX_HOME"] = str(tmp_path / "prepared-home")
    prepared = subprocess.run(
        [sys.executable, "-m", "jina_onnx", "prepare", "-m", str(artifact("t")), "--device", "cpu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=True,
    )
    assert (
        prepared.stdout.startswith("encode: jina-embedding-t-en-v1 runs onnxruntime ")
        and "\nserve: " in prepared.stdout
    )
    assert prepared.stderr.count("jina-onnx: measuring ") == 2  # throughput for encode, latency for serve
    assert stderr(sys.executable, "-c", code) == ""


def test_models_lists_models_exported_under_other_names(artifact, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("JINA_ONNX_HOME", str(tmp_path))
    shutil.copytree(artifact("t"), tmp_path / "my-notes-model")
    (tmp_path / "half-copied").mkdir()
    (tmp_path / "half-copied" / "manifest.json").write_text("{")
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    mine = next(line for line in lines if line.startswith("my-notes-model "))
    assert mine.split()[-1] == "yes" and " 312 " in mine
    assert any(line.startswith("half-copied ") and "damaged: " in line for line in lines)
    assert main(["encode", "-m", "my-notes-model", "hello"]) == 0  # and it loads by that name


def test_verify_says_which_reference_it_measured_against(artifact, checkpoint, capsys) -> None:
    assert main(["verify", str(artifact("t"))]) == 0
    stored = capsys.readouterr().out
    assert "ok   reference: torch fp32 embeddings stored at export (probe.json), " in stored
    assert main(["verify", str(artifact("t")), "--against", str(checkpoint("t"))]) == 0
    now = capsys.readouterr().out
    assert f"ok   reference: PyTorch fp32 run now on {checkpoint('t')}, " in now and "stored at export" not in now


def test_serve_help_lists_every_route(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for route in ("POST /v1/embeddings", "POST /embed", "POST / and", "POST /tokenize", "GET /info", "GET /v1/models"):
        assert route in text, route


def test_int8_named_on_a_cpu_without_int8_units_says_so_once(artifact, tmp_path: Path, monkeypatch, capsys) -> None:
    from jina_onnx import loader, machine

    directory = artifact("t")  # exported (when first asked for) on the real CPU, before the stand-in below
    monkeypatch.setenv("JINA_ONNX_HOME", str(tmp_path))  # nothing measured on this "CPU" yet
    avx2_only = machine.CpuClass("x86_64", ("avx2", "fma"))  # a first-generation AMD EPYC
    monkeypatch.setattr(loader, "cpu_class", lambda: avx2_only)
    monkeypatch.setattr(machine, "cpu_class", lambda: avx2_only)
    for _ in range(2):
        assert main(["encode", "-m", str(directory), "--precision", "int8", "a cat"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("this CPU (x86 AVX2) has no int8 dot-product units") == 1, captured.err
    assert len(captured.out.splitlines()) == 2  # it still ran what was asked, twice
    assert main(["models"]) == 0 and "this CPU: x86 AVX2 (avx2, fma); int8 units: no" in capsys.readouterr().out
