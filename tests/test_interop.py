"""One export that every runtime loads: the export directory is a Hugging Face model repository, and
sentence-transformers' ONNX backend, fastembed, transformers.js in Node and in headless Chromium read it as it
is and get our vectors (benchmarks/interop.py runs them; the README's compatibility table is its output).

The JavaScript side comes from examples/browser/package-lock.json and Debian's chromium-headless-shell,
installed by scripts/setup-js.sh (scripts/test.sh runs it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from benchmarks import interop
from jina_onnx import ArtifactError, build_model
from jina_onnx.gates import GATES
from jina_onnx.manifest import MANIFEST_FILE, Precision, load_manifest, sha256_file

SLOW = pytest.mark.slow
MODELS = ["t", "s", pytest.param("b", marks=SLOW), pytest.param("l", marks=SLOW), "minilm"]
INT8_GATE = GATES[Precision.INT8].mean_cosine


@pytest.fixture
def exported(request, artifact, minilm_artifact) -> Path:  # type: ignore[no-untyped-def]
    return minilm_artifact if request.param == "minilm" else artifact(request.param)


def same_fp32(vectors: np.ndarray, directory: Path) -> None:
    np.testing.assert_allclose(vectors, interop.jina_vectors(directory), atol=interop.FP32_MAX_DIFF, rtol=0)


def passes_int8_gate(vectors: np.ndarray, directory: Path) -> None:
    result = interop.difference(vectors, interop.jina_vectors(directory))
    assert result["mean_cosine"] >= INT8_GATE, result


@pytest.mark.parametrize("exported", MODELS, indirect=True)
def test_sentence_transformers_onnx_backend_runs_the_export(exported: Path) -> None:
    same_fp32(interop.sentence_transformers_vectors(exported), exported)
    passes_int8_gate(interop.sentence_transformers_vectors(exported, "onnx/model_quantized.onnx"), exported)


@pytest.mark.parametrize("exported", MODELS, indirect=True)
def test_fastembed_custom_model_runs_the_export(exported: Path) -> None:
    same_fp32(interop.fastembed_vectors(exported), exported)


@pytest.mark.parametrize("exported", MODELS, indirect=True)
def test_transformers_js_in_node_runs_the_export(exported: Path) -> None:
    vectors = interop.node_vectors(exported, "fp32")
    within = [i for i, text in enumerate(interop.TEXTS) if len(text) < 1000]  # all but the over-length text
    expected = interop.jina_vectors(exported)
    np.testing.assert_allclose(vectors[within], expected[within], atol=interop.FP32_MAX_DIFF, rtol=0)
    # The over-length text differs only by transformers.js' truncation, which cuts off the end token.
    assert np.abs(vectors - expected).max() > interop.FP32_MAX_DIFF
    like_js = interop.cut_like_transformers_js(exported, interop.TEXTS)
    np.testing.assert_allclose(vectors, like_js, atol=interop.FP32_MAX_DIFF, rtol=0)
    quantized = interop.difference(interop.node_vectors(exported, "q8"), like_js)
    assert quantized["mean_cosine"] >= INT8_GATE, quantized


@pytest.mark.parametrize("exported", ["s"], indirect=True)
def test_transformers_js_pipeline_alone_still_wants_a_t5_decoder(exported: Path) -> None:
    # Why examples/browser/feature-extractor.js builds the T5 encoders' pipeline from transformers.js' parts:
    # pipeline() maps model_type t5 to its encoder-decoder T5Model, which opens onnx/encoder_model.onnx and a
    # decoder. If a later version runs the export as it is, this fails, and that file can go back to pipeline().
    script = (
        'import { env, pipeline } from "@huggingface/transformers";'
        f"env.allowRemoteModels = false; env.localModelPath = {json.dumps(str(exported.parent))};"
        f'await pipeline("feature-extraction", {json.dumps(exported.name)}, {{ dtype: "fp32", device: "cpu" }});'
    )
    done = subprocess.run(
        ["node", "--input-type=module", "-e", script], cwd=interop.EXAMPLE, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and "onnx/encoder_model.onnx" in done.stderr, done.stderr[-600:]


@pytest.mark.parametrize("exported", ["minilm", "t", "s"], indirect=True)
def test_the_browser_example_embeds_in_headless_chromium(exported: Path, tmp_path: Path) -> None:
    screenshot = tmp_path / "page.png"
    page = interop.browser_page(exported, screenshot)
    assert page["outside"] == [], "the page fetched files from outside the local server"
    vectors = np.asarray(page["vectors"])
    expected = interop.jina_vectors(exported, texts=page["texts"])
    np.testing.assert_allclose(vectors, expected, atol=interop.FP32_MAX_DIFF, rtol=0)  # WebAssembly: fp32's bound
    # The page's similarity table is what Python computes from the same vectors.
    unit = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(page["cosine"]), unit @ unit.T, atol=1e-4)
    assert screenshot.stat().st_size > 10_000 and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_export_is_a_hub_repository(artifact, tmp_path: Path) -> None:
    """Placed in a Hugging Face cache as a download would be, huggingface_hub finds it offline, and the
    directory it returns loads in jina-onnx and sentence-transformers."""
    from huggingface_hub import snapshot_download

    directory = artifact("t")
    commit = "0" * 40
    repo = tmp_path / "hub" / "models--jina-onnx--jina-embedding-t-en-v1"
    shutil.copytree(directory, repo / "snapshots" / commit, copy_function=os.link)  # links: no 190 MB copy
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    found = Path(
        snapshot_download("jina-onnx/jina-embedding-t-en-v1", cache_dir=tmp_path / "hub", local_files_only=True)
    )
    assert found == repo / "snapshots" / commit
    same_fp32(interop.sentence_transformers_vectors(found), directory)
    np.testing.assert_array_equal(
        build_model(found, device="cpu", precision="fp32").encode(["a"]),
        build_model(directory, device="cpu", precision="fp32").encode(["a"]),
    )


def test_the_manifest_records_every_file(artifact) -> None:
    directory = artifact("t")
    manifest = load_manifest(directory)
    recorded = {manifest.tokenizer.file, *(v.file for v in manifest.variants.values()), *manifest.files}
    recorded |= {manifest.probe.file} if manifest.probe else set()
    on_disk = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    assert on_disk - recorded == {MANIFEST_FILE, "README.md"}  # the model card: users edit it, so no checksum
    for name, sha in manifest.files.items():
        assert sha256_file(directory / name) == sha, name
    tokenizer_config = json.loads((directory / "tokenizer_config.json").read_text())
    assert tokenizer_config["model_max_length"] == manifest.max_length and "max_length" not in tokenizer_config


def test_damaged_files_in_the_new_layout_are_refused(artifact, tmp_path: Path, capsys) -> None:
    from jina_onnx.cli import main

    damaged = shutil.copytree(artifact("t"), tmp_path / "damaged")
    data = bytearray((damaged / "onnx" / "model_quantized.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (damaged / "onnx" / "model_quantized.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="model_quantized.onnx"):
        build_model(damaged, device="cpu", precision="int8")
    # A consumer-side file jina-onnx never reads: verify still catches it.
    (damaged / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert main(["verify", str(damaged)]) == 1
    out = capsys.readouterr().out
    assert "FAIL onnx/model_quantized.onnx" in out and "FAIL 1_Pooling/config.json" in out


def test_an_artifact_in_the_old_layout_still_loads(artifact, tmp_path: Path) -> None:
    """Schema 1 (before the Hugging Face layout): graphs at the top with the pooled output first, no `files`."""
    import onnx

    new = artifact("t")
    old = tmp_path / "old"
    old.mkdir()
    for name in ("tokenizer.json", "probe.json"):
        shutil.copy(new / name, old / name)
    graph = onnx.load(str(new / "onnx" / "model.onnx"))
    tokens, pooled = list(graph.graph.output)
    for node in graph.graph.node:  # the old name of the token-level output
        node.input[:] = ["token_embeddings" if i == "last_hidden_state" else i for i in node.input]
        node.output[:] = ["token_embeddings" if o == "last_hidden_state" else o for o in node.output]
    tokens.name = "token_embeddings"
    del graph.graph.output[:]
    graph.graph.output.extend([pooled, tokens])
    onnx.save(graph, str(old / "model.onnx"))
    manifest = json.loads((new / MANIFEST_FILE).read_text())
    fp32 = manifest["variants"]["fp32"] | {"file": "model.onnx", "sha256": sha256_file(old / "model.onnx")}
    manifest |= {"schema_version": 1, "variants": {"fp32": fp32}}
    del manifest["files"]
    (old / MANIFEST_FILE).write_text(json.dumps(manifest))
    model = build_model(old, device="cpu")
    assert model.onnx_path == old / "model.onnx" and model.engine.pooled
    same_fp32(interop.jina_vectors(old), new)
