"""Export of the four exact configs and the real MiniLM: parity with PyTorch and artifact layout."""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from benchmarks.sts import load_sts
from jina_onnx import build_model
from jina_onnx.errors import ExportError, ParityError
from jina_onnx.export import export_model
from jina_onnx.manifest import load_manifest
from jina_onnx.registry import find_spec

LONG = "The committee reviewed every proposal with care before the final vote. " * 80  # > 512 tokens


def mixed_texts() -> list[str]:
    first, second, _ = load_sts()
    return first[:12] + second[:12] + ["", "a", LONG, "Zoë's café — ünïcode ✓ 東京", LONG[:4000]]


def sentence_transformer(path: Path):  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu")


@pytest.mark.parametrize(
    "size", ["t", "s", pytest.param("b", marks=pytest.mark.slow), pytest.param("l", marks=pytest.mark.slow)]
)
def test_export_matches_pytorch(size: str, checkpoint, artifact) -> None:
    directory = artifact(size)
    manifest = load_manifest(directory)
    spec = find_spec(size)
    assert spec is not None
    assert (manifest.dim, manifest.max_length, manifest.architecture) == (spec.dim, 512, spec.architecture)
    assert sorted(manifest.variants) == ["fp16", "fp32", "fp32-opt", "int8"] and not manifest.rejected
    assert manifest.variants["fp32"].parity.max_abs_diff <= 1e-4  # recorded at export
    assert manifest.variants["fp32-opt"].parity.max_abs_diff <= 1e-4
    assert manifest.variants["fp16"].parity.min_cosine >= 0.999
    assert manifest.variants["int8"].parity.mean_cosine >= 0.99

    texts = mixed_texts()
    expected = sentence_transformer(checkpoint(size)).encode(texts, convert_to_numpy=True, batch_size=8)
    for precision in ("fp32", "fp32-opt", "fp16", "int8"):
        model = build_model(directory, device="cpu", precision=precision)  # every variant loads on CPU
        with pytest.warns(UserWarning, match="2 of 29 inputs were longer than 512 tokens"):
            actual = model.encode(texts, batch_size=8)
        assert actual.shape == (len(texts), spec.dim) and actual.dtype == np.float32
        if precision.startswith("fp32"):
            assert np.abs(actual - expected).max() <= 1e-4, precision
        else:
            cosines = (actual * expected).sum(1) / np.linalg.norm(actual, axis=1) / np.linalg.norm(expected, axis=1)
            assert cosines.min() >= (0.999 if precision == "fp16" else 0.98), (precision, cosines.min())


@pytest.mark.parametrize(
    "size,inputs", [("t", ["input_ids", "attention_mask", "token_type_ids"]), ("s", ["input_ids", "attention_mask"])]
)
def test_graph_layout(size: str, inputs: list[str], artifact) -> None:
    directory = artifact(size)
    graph = onnx.load(str(directory / "onnx" / "model.onnx"), load_external_data=False).graph
    assert [i.name for i in graph.input] == inputs
    # Token-level first, under the name Hugging Face consumers read; the pooled output for jina-onnx.
    assert [o.name for o in graph.output] == ["last_hidden_state", "sentence_embedding"]
    dims = [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "sequence"]
    files = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    assert files == [
        "1_Pooling/config.json",
        "README.md",  # the model card
        "config.json",
        "manifest.json",
        "modules.json",
        "onnx/model.onnx",
        "onnx/model_cpu_fused.onnx",
        "onnx/model_fp16.onnx",
        "onnx/model_quantized.onnx",
        "probe.json",
        "sentence_bert_config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    tokenizer = json.loads((directory / "tokenizer.json").read_text())
    assert tokenizer["truncation"] is None and tokenizer["padding"] is None


def test_t5_export_never_runs_remote_code(checkpoint) -> None:
    # The synthetic T5 checkpoint's modeling_t5.py raises if imported; export succeeded without it.
    assert "raise RuntimeError" in (checkpoint("s") / "modeling_t5.py").read_text()
    assert json.loads((checkpoint("s") / "config.json").read_text())["auto_map"]


def test_minilm_matches_sentence_transformers_and_sts(minilm_artifact, minilm_sts) -> None:
    from benchmarks.sts import sts_spearman
    from jina_onnx.export.synthetic import minilm_checkpoint

    first, second, scores, ours1, ours2 = minilm_sts  # the fp32 graph's vectors, through build_model + encode
    reference = sentence_transformer(minilm_checkpoint())
    ref1 = reference.encode(first, batch_size=64, convert_to_numpy=True)
    ref2 = reference.encode(second, batch_size=64, convert_to_numpy=True)
    assert load_manifest(minilm_artifact).normalize and np.allclose(np.linalg.norm(ours1, axis=1), 1, atol=1e-5)
    assert max(np.abs(ours1 - ref1).max(), np.abs(ours2 - ref2).max()) <= 1e-4
    ours, theirs = sts_spearman(ours1, ours2, scores), sts_spearman(ref1, ref2, scores)
    assert ours > 80  # the published all-MiniLM-L6-v2 STS-dev figure is about 82
    assert abs(ours - theirs) <= 0.1


def test_parity_failure_writes_nothing(checkpoint, tmp_path: Path, monkeypatch) -> None:
    from jina_onnx.export import variants
    from jina_onnx.manifest import Precision

    monkeypatch.setitem(variants.GATES, Precision.FP32, variants.Gate(max_abs_diff=0.0))  # any difference fails
    out = tmp_path / "refused"
    with pytest.raises(ParityError, match="nothing was written"):
        export_model(checkpoint("t"), out)
    assert list(tmp_path.iterdir()) == []  # neither the artifact nor a staging directory


def test_failure_midway_leaves_nothing(checkpoint, tmp_path: Path, monkeypatch) -> None:
    from jina_onnx.export import exporter

    def broken(*args, **kwargs):
        raise RuntimeError("simulated crash while tracing")

    monkeypatch.setattr(exporter, "export_onnx", broken)
    with pytest.raises(RuntimeError, match="simulated crash"):
        export_model(checkpoint("t"), tmp_path / "crashed")
    assert list(tmp_path.iterdir()) == []


def test_existing_artifact_needs_overwrite(artifact, checkpoint, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(artifact("t"), out)
    before = (out / "manifest.json").read_text()
    with pytest.raises(ExportError, match="pass overwrite=True"):  # --overwrite in the CLI's words
        export_model(checkpoint("t"), out)
    assert (out / "manifest.json").read_text() == before
    export_model(checkpoint("t"), out, overwrite=True, precisions=["fp32"])  # fp32 only: the overwrite is the point
    assert load_manifest(out).created_at >= load_manifest(artifact("t")).created_at
    assert sorted(load_manifest(out).variants) == ["fp32"] and not (out / "onnx" / "model_quantized.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]


def test_unsupported_and_incomplete_checkpoints(checkpoint, tmp_path: Path) -> None:
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2Model"]}))
    (gpt / "model.safetensors").write_bytes(b"")
    with pytest.raises(ExportError, match="supported: BERT"):
        export_model(gpt, tmp_path / "out-gpt")

    no_weights = tmp_path / "no-weights"
    shutil.copytree(checkpoint("t"), no_weights)
    (no_weights / "pytorch_model.bin").unlink()
    with pytest.raises(ExportError, match="has no weights"):
        export_model(no_weights, tmp_path / "out-nw")

    with pytest.raises(ExportError, match="no such directory"):
        export_model(str(tmp_path / "does" / "not" / "exist"), tmp_path / "out-missing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpt", "no-weights"]


def test_missing_weights_are_refused(checkpoint, tmp_path: Path) -> None:
    import torch

    partial = tmp_path / "partial"
    shutil.copytree(checkpoint("t"), partial)
    state = torch.load(partial / "pytorch_model.bin", weights_only=True)
    del state[next(k for k in state if "encoder.layer.3" in k)]
    torch.save(state, partial / "pytorch_model.bin")
    with pytest.raises(ExportError, match="weights are missing"):
        export_model(partial, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def int8_only(checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """t exported with int8 only (read by two tests; an int8 export is most of a t export's time)."""
    return export_model(checkpoint("t"), tmp_path_factory.mktemp("t-int8") / "t-int8", precisions=["int8"])


def test_export_writes_exactly_the_named_precisions(checkpoint, int8_only: Path, tmp_path: Path, capsys) -> None:
    from jina_onnx.cli import main

    out = int8_only
    graphs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.onnx"))
    assert graphs == ["onnx/model_quantized.onnx"]  # fp32 and fp32-opt were built to gate and derive it, not kept
    manifest = load_manifest(out)
    assert sorted(manifest.variants) == ["int8"] and manifest.rejected == {}
    for precision in ("int8", "auto"):
        model = build_model(out, precision=precision, device="cpu")
        assert model.precision == "int8" and model.encode(["a short text"]).shape == (1, 312)
    assert main(["verify", str(out)]) == 0
    # The CLI: `--precision fp32` writes fp32 only (it used to add fp32-opt); no --precision, the default four:
    # tests/test_cli.py, test_export_command.
    assert main(["-q", "export", str(checkpoint("t")), "--out", str(tmp_path / "t-fp32"), "--precision", "fp32"]) == 0
    assert sorted(p.name for p in (tmp_path / "t-fp32").rglob("*.onnx")) == ["model.onnx"]
    capsys.readouterr()
    with pytest.raises(ExportError, match="'fp8' is not one of fp32, fp32-opt, fp16, int8"):
        export_model(checkpoint("t"), tmp_path / "bad", precisions=["fp8"])
    assert not (tmp_path / "bad").exists()


def test_export_writes_a_model_card_the_hub_parses(int8_only: Path) -> None:
    from huggingface_hub import ModelCard

    out = int8_only
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "sentence-transformers" and card.data.pipeline_tag == "sentence-similarity"
    assert {"onnx", "jina-onnx", "feature-extraction"} <= set(card.data.tags)
    assert card.data.base_model is None and card.data.license is None  # a local checkpoint: neither is known
    assert "onnx/model_quantized.onnx" in card.text and "min cosine" in card.text
    assert 'backend="onnx"' in card.text and "add_custom_model" in card.text and "build_model(" in card.text
    assert 'pipeline("feature-extraction"' in card.text  # transformers.js
    assert "README.md" not in load_manifest(out).files  # users edit cards: verify does not checksum it


def test_an_export_frees_its_graphs_as_it_goes(checkpoint, tmp_path: Path) -> None:
    """torch's traced module and onnxruntime.transformers' optimizer leave whole graphs in reference cycles; left
    to Python's rare full gc pass, the test process kept 3.4 GB after exporting b, 13 GB after l, and was killed
    for memory. Automatic gc is off here, so only the export's own collection can free them."""

    def graphs() -> int:
        return sum(isinstance(o, onnx.ModelProto) for o in gc.get_objects())

    gc.collect()
    before = graphs()
    gc.disable()
    try:
        export_model(checkpoint("t"), tmp_path / "t", precisions=["fp16", "int8"])  # every step that makes graphs
        left = graphs()
    finally:
        gc.enable()
    assert left <= before
