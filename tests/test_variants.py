"""Precision variants: fusions, fp16 overflow safety, int8 gates, and how the runtime picks one."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest

from jina_onnx import ArtifactError, build_model
from jina_onnx.export import export_model
from jina_onnx.export.variants import GATES, Gate, fused_op_counts, int8_settings, to_fp16
from jina_onnx.manifest import Precision, load_manifest
from jina_onnx.registry import Architecture, find_spec

from benchmarks.sts import load_sts, sts_spearman


def expected_fusions(size: str) -> dict[str, int]:
    spec = find_spec(size)
    assert spec is not None
    if spec.architecture is Architecture.BERT:
        return {"EmbedLayerNormalization": 1, "Attention": spec.layers, "SkipLayerNormalization": 2 * spec.layers,
                "BiasGelu": spec.layers}
    # T5: the first RMSNorm and the final one stand alone; every other one absorbs its residual Add.
    # No attention fusion: it would bring RelativePositionBias, which has no CPU kernel.
    return {"SimplifiedLayerNormalization": 2, "SkipSimplifiedLayerNormalization": 2 * spec.layers - 1}


@pytest.mark.parametrize("size", ["t", "s", pytest.param("b", marks=pytest.mark.slow),
                                  pytest.param("l", marks=pytest.mark.slow)])
def test_fused_op_counts(size: str, artifact) -> None:
    directory = artifact(size)
    graph = onnx.load(str(directory / "model.cpu-opt.onnx"), load_external_data=False)
    assert fused_op_counts(graph) == expected_fusions(size)
    assert load_manifest(directory).variants[Precision.FP32_OPT].fused_ops == expected_fusions(size)


def test_auto_picks_int8_on_cpu_and_says_so(artifact, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="jina_onnx"):
        model = build_model(artifact("s"), device="cpu")
    assert model.precision == "int8" and model.onnx_path.name == "model.int8.onnx"
    assert sum("runs int8 on cpu" in r.getMessage() for r in caplog.records) == 1
    assert build_model(artifact("s"), precision="fp32").onnx_path.name == "model.onnx"
    assert build_model(artifact("s"), precision="fp32-opt").onnx_path.name == "model.cpu-opt.onnx"


def test_auto_order(artifact) -> None:
    from jina_onnx.model import choose_variant

    manifest = load_manifest(artifact("t"))
    assert choose_variant(manifest, "auto", "cuda").precision is Precision.FP16
    assert choose_variant(manifest, "auto", "cpu").precision is Precision.INT8
    without_int8 = type(manifest)(**{**manifest.__dict__, "variants": {
        p: v for p, v in manifest.variants.items() if p is not Precision.INT8}})
    assert choose_variant(without_int8, "auto", "cpu").precision is Precision.FP32_OPT


@pytest.fixture(scope="module")
def hot_t5(tmp_path_factory) -> Path:
    """An s checkpoint whose FFN output projections are scaled so fp32 activations pass 65504."""
    from jina_onnx.export.synthetic import write_checkpoint

    return write_checkpoint("s", tmp_path_factory.mktemp("hot-s"), ffn_output_scale=3e4)


def test_fp16_survives_activations_beyond_fp16_range(hot_t5: Path, tmp_path: Path) -> None:
    import torch
    import transformers

    # 1. The fp32 model really produces values fp16 cannot hold.
    model = transformers.T5EncoderModel.from_pretrained(hot_t5).eval()
    peaks: list[float] = []
    for name, module in model.named_modules():
        if name.endswith("DenseReluDense.wo"):
            module.register_forward_hook(lambda m, i, out: peaks.append(float(out.abs().max())))
    tokenizer = transformers.AutoTokenizer.from_pretrained(hot_t5)
    with torch.no_grad():
        model(**tokenizer(["how is the weather today", "a man plays a guitar"], return_tensors="pt", padding=True))
    assert max(peaks) > 65504

    # 2. The exported fp16 variant passes its gate there.
    out = export_model(hot_t5, tmp_path / "hot", precisions=["fp32", "fp16"])
    manifest = load_manifest(out)
    assert Precision.FP16 in manifest.variants, manifest.rejected
    assert manifest.variants[Precision.FP16].parity.min_cosine >= 0.999
    texts = load_sts()[0][:50]
    fp32 = build_model(out, precision="fp32").encode(texts)
    fp16 = build_model(out, precision="fp16").encode(texts)
    cosines = (fp16 * fp32).sum(1) / np.linalg.norm(fp16, axis=1) / np.linalg.norm(fp32, axis=1)
    assert cosines.min() >= 0.999

    # 3. A naive conversion of the same graph overflows into NaN.
    naive = tmp_path / "naive.onnx"
    to_fp16(out / "model.cpu-opt.onnx", naive, Architecture.T5_ENCODER, safe=False)
    runtime = build_model(out, precision="fp32")
    import onnxruntime

    runtime.session = onnxruntime.InferenceSession(str(naive), providers=["CPUExecutionProvider"])
    assert not np.isfinite(runtime.encode(texts[:4])).all()


def test_variant_under_its_gate_is_not_written(checkpoint, tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setitem(GATES, Precision.INT8, Gate(mean_cosine=1.01))  # unreachable
    with caplog.at_level(logging.WARNING, logger="jina_onnx"):
        out = export_model(checkpoint("t"), tmp_path / "gated", precisions=["fp32", "int8"])
    manifest = load_manifest(out)
    assert Precision.INT8 not in manifest.variants and not (out / "model.int8.onnx").exists()
    reason = manifest.rejected["int8"]
    assert "mean_cosine >= 1.01" in reason and "mean_cosine 0.99" in reason and "FFN output MatMuls" not in reason
    assert any("int8 missed its gate" in r.getMessage() for r in caplog.records)
    assert build_model(out, device="cpu").precision == "fp32-opt"  # auto never picks a rejected variant
    with pytest.raises(ArtifactError, match="int8 missed its gate"):
        build_model(out, precision="int8")


def test_no_optimize_writes_plain_variants(checkpoint, tmp_path: Path) -> None:
    out = export_model(checkpoint("t"), tmp_path / "plain", precisions=["fp32", "int8"], optimize=False)
    manifest = load_manifest(out)
    assert sorted(manifest.variants) == ["fp32", "int8"]
    assert manifest.variants[Precision.INT8].built_from.startswith("fp32, dynamic int8")


def test_bad_precision_list(checkpoint, tmp_path: Path) -> None:
    from jina_onnx.errors import ExportError

    with pytest.raises(ExportError, match="'bf16' is not one of fp32, fp16, int8"):
        export_model(checkpoint("t"), tmp_path / "x", precisions=["fp32", "bf16"])
    assert not (tmp_path / "x").exists()


def test_minilm_sts_per_precision(minilm_artifact) -> None:
    first, second, scores = load_sts()
    spearman = {}
    for precision in ("fp32", "fp32-opt", "fp16", "int8"):
        model = build_model(minilm_artifact, precision=precision)
        spearman[precision] = sts_spearman(model.encode(first, batch_size=64), model.encode(second, batch_size=64),
                                           scores)
    print("MiniLM STS-dev Spearman x100:", {k: round(v, 2) for k, v in spearman.items()})
    assert abs(spearman["fp32-opt"] - spearman["fp32"]) <= 0.01
    assert abs(spearman["fp16"] - spearman["fp32"]) <= 0.1
    assert abs(spearman["int8"] - spearman["fp32"]) <= 1.0


def test_int8_settings_follow_the_cpu() -> None:
    assert int8_settings("x86_64", "fpu avx2 avx512f avx512_vnni")[0] is False
    assert int8_settings("x86_64", "fpu avx2 avx_vnni")[0] is False
    assert int8_settings("x86_64", "fpu avx2 fma") == (True, "x86 without VNNI (reduce_range)")
    assert int8_settings("aarch64", "") == (False, "arm64")
