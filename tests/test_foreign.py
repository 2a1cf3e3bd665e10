"""jina-onnx reads other people's ONNX exports: sentence-transformers' own ONNX save of the real
all-MiniLM-L6-v2, with no jina-onnx manifest, runs as that tool runs it."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from jina_onnx import ModelNotFoundError, build_model

TEXTS = ["how is the weather today", "What is the current weather like today?", "word " * 400, ""]


@pytest.fixture(scope="module")
def st_onnx_dir(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """sentence-transformers' ONNX export (optimum, offline) of the real MiniLM, saved in its own layout."""
    from sentence_transformers import SentenceTransformer

    from jina_onnx.export.synthetic import minilm_checkpoint

    out = tmp_path_factory.mktemp("st-onnx") / "all-MiniLM-L6-v2-onnx"
    SentenceTransformer(str(minilm_checkpoint()), backend="onnx", device="cpu").save(str(out))
    assert (out / "onnx" / "model.onnx").is_file() and not (out / "manifest.json").exists()
    return out


def test_a_sentence_transformers_onnx_save_runs_as_that_tool_runs_it(st_onnx_dir: Path, caplog) -> None:
    from sentence_transformers import SentenceTransformer

    with caplog.at_level(logging.WARNING, logger="jina_onnx"):
        model = build_model(st_onnx_dir, device="cpu")
        build_model(st_onnx_dir, device="cpu", precision="fp32")
    assert sum("not gated by jina-onnx" in r.getMessage() for r in caplog.records) == 1  # said once
    assert (model.dim, model.max_length, model.manifest.normalize) == (384, 256, True)
    assert model.onnx_path == st_onnx_dir / "onnx" / "model.onnx" and not model.engine.pooled
    expected = SentenceTransformer(str(st_onnx_dir), backend="onnx", device="cpu").encode(TEXTS)
    np.testing.assert_allclose(model.encode(TEXTS), expected, atol=1e-4, rtol=0)


def test_a_directory_of_neither_kind_says_what_it_lacks(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="no manifest.json and no onnx/model.onnx"):
        build_model(tmp_path, device="cpu")


def test_verify_gates_a_third_party_export_against_pytorch(st_onnx_dir: Path, capsys) -> None:
    from jina_onnx.cli import main
    from jina_onnx.export.synthetic import minilm_checkpoint

    assert main(["verify", str(st_onnx_dir)]) == 1  # no manifest: nothing to check it against
    assert "pass --against CHECKPOINT" in capsys.readouterr().out
    assert main(["verify", str(st_onnx_dir), "--against", str(minilm_checkpoint())]) == 0
    out = capsys.readouterr().out
    assert "ok   fp32 probe: max abs diff" in out and "0 failed" in out


def test_verify_against_another_checkpoint_fails(artifact, checkpoint, tmp_path: Path, capsys) -> None:
    """Our t export without its manifest (a third-party directory of the same layout), against a t checkpoint
    with other weights: every graph misses its gate."""
    import shutil

    from jina_onnx.cli import main
    from jina_onnx.export.synthetic import write_checkpoint

    foreign = shutil.copytree(artifact("t"), tmp_path / "foreign")
    (foreign / "manifest.json").unlink()
    assert main(["verify", str(foreign), "--against", str(checkpoint("t"))]) == 0
    assert "ok   int8 probe" in capsys.readouterr().out  # onnx/model_quantized.onnx is gated too
    other = write_checkpoint("t", tmp_path / "other-weights", seed=1)
    assert main(["verify", str(foreign), "--against", str(other)]) == 1
    out = capsys.readouterr().out
    assert "FAIL fp32 probe" in out and "FAIL int8 probe" in out and "FAIL fp16 probe" in out
    assert main(["verify", str(foreign), "--against", str(tmp_path / "nowhere")]) == 1  # not a checkpoint
    assert "FAIL reference" in capsys.readouterr().out
