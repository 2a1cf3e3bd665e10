"""Static int8 (export/static_int8.py): its calibration texts, determinism, exact smoothing, and the record."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import pooled_before_after

from benchmarks.workloads import sts_sentences
from jina_onnx.export.static_int8 import (
    TARGET_MEAN_COSINE,
    build_static_int8,
    calibration_batches,
    calibration_texts,
    smooth,
    weight_matmuls,
)
from jina_onnx.export.variants import ffn_output_matmuls, optimize_for_cpu
from jina_onnx.machine import cpu_class
from jina_onnx.manifest import Precision, load_manifest
from jina_onnx.probe import NEIGHBOURS, PROBE_TEXTS
from jina_onnx.registry import Architecture
from jina_onnx.tokenization import TextTokenizer


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def test_calibration_texts_are_the_packages_own() -> None:
    # The benchmarks measure on STS-dev and the gates on the probe texts: calibrating on either would grade the
    # int8 graph on what it was fitted to.
    texts = calibration_texts()
    held_out = {_normal(t) for t in [*sts_sentences(), *PROBE_TEXTS, *NEIGHBOURS] if len(t.split()) >= 3}
    joined = "\n".join(_normal(t) for t in texts)
    assert [t for t in held_out if t in joined] == []
    words = [len(t.split()) for t in texts]
    assert len(texts) >= 300 and len(set(texts)) == len(texts) and all(t.strip() == t and t for t in texts)
    assert sum(w <= 8 for w in words) >= 50 and sum(w >= 250 for w in words) >= 20  # queries to 512-token passages


@pytest.fixture(scope="module")
def t_static_source(artifact, tmp_path_factory) -> tuple[Path, list[dict[str, np.ndarray]], list[str]]:
    """t's static int8 source (fused but for attention), its calibration feeds (64 texts) and FFN outputs."""
    directory = artifact("t")
    manifest = load_manifest(directory)
    source = tmp_path_factory.mktemp("t-static") / "source.onnx"
    optimize_for_cpu(directory / "onnx" / "model.onnx", source, Architecture.BERT, 12, 312, attention=False)
    tokenizer = TextTokenizer(directory / "tokenizer.json", manifest.max_length, manifest.tokenizer.pad_id)
    texts = calibration_texts()
    feeds = calibration_batches(tokenizer, texts[::6][:48] + texts[-30:-24], manifest.inputs)
    return source, feeds, ffn_output_matmuls(source)


def test_calibration_is_deterministic(t_static_source, tmp_path: Path) -> None:
    source, feeds, ffn_outputs = t_static_source
    first, second = tmp_path / "a" / "int8.onnx", tmp_path / "b" / "int8.onnx"
    for target in (first, second):
        target.parent.mkdir()
        result = build_static_int8(source, target, feeds, ffn_outputs, "test")
        assert result.chosen is not None and result.chosen.mean_cosine >= TARGET_MEAN_COSINE
    assert first.read_bytes() == second.read_bytes()
    # ... and the bytes depend on the calibration: other texts, other scales.
    other = tmp_path / "c" / "int8.onnx"
    other.parent.mkdir()
    build_static_int8(source, other, feeds[:2], ffn_outputs, "test")
    assert other.read_bytes() != first.read_bytes()
    ops = {n.op_type for n in onnx.load(str(first)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "DynamicQuantizeLinear" not in ops


@pytest.mark.parametrize("size", ["t", "s"])
def test_smoothing_keeps_the_fp32_function(artifact, size: str) -> None:
    # X @ W == (X / s) @ (diag(s) W), and behind a Relu (T5's FFN) the 1/s is folded into the weights before it:
    # in fp32 the smoothed graph computes the same vectors, whatever the scales.
    directory = artifact(size)
    path = directory / "onnx" / "model_cpu_fused.onnx"
    if size == "t":
        path = directory / "onnx" / "model.onnx"
    model = onnx.load(str(path))
    targets = weight_matmuls(model.graph)
    rng = np.random.default_rng(0)
    rows = {t.name: t.dims[0] for t in model.graph.initializer}
    peaks = {node.input[0]: rng.uniform(0.01, 60.0, rows[node.input[1]]).astype(np.float32) for node in targets}
    smoothed = smooth(model, targets, peaks, 0.5, {n: 0.9 for n in ffn_output_matmuls(path)})
    muls = sum(n.op_type == "Mul" and n.name.endswith("/SmoothQuant") for n in model.graph.node)
    folded = [tensor for tensor, (x, _) in smoothed.items() if tensor == x]
    if size == "s":
        assert 0 < len(folded) and muls == len(smoothed) - len(folded)  # the FFN outputs' scales went into wi
    else:
        assert not folded and muls == len(smoothed)
    feed = {
        "input_ids": np.array([[101, 2023, 2003, 1037, 3231, 102], [101, 7592, 102, 0, 0, 0]]),
        "attention_mask": np.array([[1] * 6, [1, 1, 1, 0, 0, 0]]),
        "token_type_ids": np.zeros((2, 6), np.int64),
    }
    before, after = pooled_before_after(path, model, feed)
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4)


def test_manifest_records_the_int8_recipe_its_tries_and_its_speed(artifact, minilm_artifact) -> None:
    from jina_onnx.export.exporter import CALIBRATION_ENV, calibration_subset

    for directory, env in ((artifact("t"), os.environ.get(CALIBRATION_ENV)), (minilm_artifact, None)):
        manifest = load_manifest(directory)
        variant = manifest.variants[Precision.INT8]
        details = variant.details
        assert details["recipe"] == "static" and variant.built_from.endswith(
            f"{details['weight_only_ffn_outputs']} FFN outputs weight-only (MatMulNBits, blocks of 256)"
        )
        assert details["calibration"] == calibration_subset(calibration_texts(), env)[1]  # fewer in the quick set
        chosen = details["tries"][-1]  # the first try to reach the target is the one kept
        assert (
            chosen["mean_cosine"]
            >= TARGET_MEAN_COSINE
            > max((t["mean_cosine"] for t in details["tries"][:-1]), default=0)
        )
        assert (
            chosen["ffn_alpha"] == details["ffn_alpha"] and chosen["weight_only"] == details["weight_only_ffn_outputs"]
        )
        speed = details["speed"]
        assert speed["int8_vs_fp32"] > 0 and speed["against"] == "model_cpu_fused.onnx"
        assert manifest.extra["measured_on"]["cpu_class"] == cpu_class().name
        assert variant.parity.batch_invariance >= 0.99999
