"""Precision variants: fusions, fp16 overflow safety, int8 gates, and how the runtime picks one."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import layers_of, left_to_full, pooled_before_after
from onnx.shape_inference import infer_shapes

from benchmarks.sts import load_sts, sts_spearman
from jina_onnx import ArtifactError, build_model
from jina_onnx.export import export_model
from jina_onnx.export.variants import GATES, Gate, fused_op_counts, to_fp16
from jina_onnx.manifest import Precision, load_manifest
from jina_onnx.registry import Architecture, find_spec


def expected_fusions(size: str, layers: int) -> dict[str, int]:
    spec = find_spec(size)
    assert spec is not None
    if spec.architecture is Architecture.BERT:
        return {
            "EmbedLayerNormalization": 1,
            "Attention": layers,
            "SkipLayerNormalization": 2 * layers,
            "BiasGelu": layers,
        }
    # T5: the first RMSNorm and the final one stand alone; every other one absorbs its residual Add.
    # No attention fusion: it would bring RelativePositionBias, which has no CPU kernel.
    return {"SimplifiedLayerNormalization": 2, "SkipSimplifiedLayerNormalization": 2 * layers - 1}


@pytest.mark.parametrize(
    "size", ["t", "s", pytest.param("b", marks=pytest.mark.slow), pytest.param("l", marks=pytest.mark.slow)]
)
def test_fused_op_counts(size: str, artifact) -> None:
    directory = artifact(size)
    expected = expected_fusions(size, layers_of(directory))  # b and l: 2 layers in the quick run
    graph = onnx.load(str(directory / "onnx" / "model_cpu_fused.onnx"), load_external_data=False)
    assert fused_op_counts(graph) == expected
    assert load_manifest(directory).variants[Precision.FP32_OPT].fused_ops == expected


def test_auto_runs_the_fastest_measured_variant_and_says_so(artifact, tmp_path, monkeypatch, caplog) -> None:
    from jina_onnx.engines import checks

    monkeypatch.setenv("JINA_ONNX_HOME", str(tmp_path))
    # A stub that reports speeds: int8 slower than fp32-opt, as the real MiniLM's weight-only int8 can be.
    speeds = {"int8": 900.0, "fp32-opt": 1000.0, "fp32": 700.0}
    monkeypatch.setattr(checks, "measure", lambda models, objective: [speeds[m.precision] for m in models])
    with caplog.at_level(logging.INFO, logger="jina_onnx"):
        model = build_model(artifact("s"), device="cpu")
    assert model.precision == "fp32-opt" and model.onnx_path.name == "model_cpu_fused.onnx"
    assert sum("runs onnxruntime fp32-opt on cpu" in r.getMessage() for r in caplog.records) == 1
    assert build_model(artifact("s"), precision="fp32").onnx_path.name == "model.onnx"
    assert build_model(artifact("s"), precision="int8").onnx_path.name == "model_quantized.onnx"


def fp16_structure(path: Path) -> dict[str, object]:
    """What the fp16 graph computes in which type: MatMuls by weight/input type, Casts by target type."""
    graph = onnx.load(str(path)).graph
    types = {i.name: i.data_type for i in graph.initializer}
    inferred = infer_shapes(onnx.load(str(path))).graph
    types |= {v.name: v.type.tensor_type.elem_type for v in [*inferred.value_info, *inferred.input]}
    matmuls = [n for n in graph.node if n.op_type in ("MatMul", "Gemm")]
    fp32 = onnx.TensorProto.FLOAT
    casts = [n for n in graph.node if n.op_type == "Cast"]
    return {
        "matmuls": len(matmuls),
        "matmuls_touching_fp32": [n.name for n in matmuls if any(types.get(i) == fp32 for i in n.input)],
        "casts_to_fp32": sorted(n.name for n in casts if n.attribute[0].i == fp32),
        "casts_to_fp16": len([n for n in casts if n.attribute[0].i == onnx.TensorProto.FLOAT16]),
    }


@pytest.mark.parametrize(
    "size", ["s", pytest.param("b", marks=pytest.mark.slow), pytest.param("l", marks=pytest.mark.slow)]
)
def test_t5_fp16_runs_every_matmul_in_fp16(size: str, artifact) -> None:
    directory = artifact(size)
    structure = fp16_structure(directory / "onnx" / "model_fp16.onnx")
    # 4 projections per attention + QK^T and PV, 2 per FFN: 8 MatMuls a layer, none reads an fp32 tensor.
    assert structure["matmuls"] == 8 * layers_of(directory)
    assert structure["matmuls_touching_fp32"] == []
    # Back to fp32 only for pooling (the encoder output, the mask it multiplies) and last_hidden_state, output 0.
    assert structure["casts_to_fp32"] == [
        "/Cast_output_0_cast_to_fp32_node",
        "graph_output_cast0",
        "graph_output_cast_0_cast_to_fp32_node",
    ]
    assert structure["casts_to_fp16"] == 2  # the traced graph's own mask and position-bucket Casts
    fp16 = load_manifest(directory).variants[Precision.FP16]
    assert fp16.details["recipe"] == "rescaled" and fp16.parity.min_cosine >= 0.999
    assert fp16.details["alpha"] == 1.0  # seeded weights stay far under fp16's range: nothing to rescale


@pytest.fixture(scope="module")
def hot_t5(tmp_path_factory, full: bool) -> Path:
    """An s checkpoint whose fp32 residual stream and FFN outputs exceed fp16's 65504 by more than 10x (the quick
    run: 2 of its 6 layers; the embedding and every layer's outputs are scaled, so 2 overflow as 6 do)."""
    from jina_onnx.export.synthetic import write_checkpoint

    layers = find_spec("s").layers if full else 2
    if not full:
        left_to_full("tests/test_variants.py: hot_t5: layers", layers, find_spec("s").layers)
    directory = tmp_path_factory.mktemp("hot-s")
    return write_checkpoint("s", directory, ffn_output_scale=3e5, embedding_scale=3e5, layers=layers)


def _t5_embeddings(model, tokenizer, texts: list[str]) -> np.ndarray:  # type: ignore[no-untyped-def]
    import torch

    batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=512)
    with torch.no_grad():
        tokens = model(**batch)[0].float()  # (b, s, d)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return ((tokens * mask).sum(1) / mask.sum(1)).numpy()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_fp16_survives_activations_far_beyond_fp16_range(hot_t5: Path, tmp_path: Path) -> None:
    import copy

    import onnxruntime
    import torch
    import transformers

    texts = load_sts()[0][:24] + ["The quick brown fox jumps over the lazy dog. " * 20]
    model = transformers.T5EncoderModel.from_pretrained(hot_t5).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(hot_t5)

    # 1. In fp32, the residual stream and the FFN outputs pass 65504 by more than 10x.
    peaks: dict[str, float] = {"wo": 0.0, "stream": 0.0}

    def watch(key: str):  # type: ignore[no-untyped-def]
        return lambda m, i, out: peaks.__setitem__(key, max(peaks[key], float(out[0].abs().max())))

    for name, module in model.named_modules():
        if name.endswith("DenseReluDense.wo"):
            module.register_forward_hook(watch("wo"))
        elif name.endswith("layer.1") and name.startswith("encoder.block."):
            module.register_forward_hook(watch("stream"))  # T5LayerFF returns the residual sum
    reference = _t5_embeddings(model, tokenizer, texts)
    assert peaks["wo"] > 10 * 65504 and peaks["stream"] > 10 * 65504, peaks

    # 2. Exported: the rescaled recipe, its alpha, every MatMul in fp16, and the gate passed.
    out = export_model(hot_t5, tmp_path / "hot", precisions=["fp32", "fp32-opt", "fp16"])  # step 4 reads fp32-opt
    fp16 = load_manifest(out).variants[Precision.FP16]
    alpha = fp16.details["alpha"]
    assert fp16.details["recipe"] == "rescaled" and fp16.parity.min_cosine >= 0.999
    assert fp16.details["residual_peak_fp32"] > 10 * 65504 and alpha * fp16.details["residual_peak_fp32"] < 65504 / 8
    assert fp16_structure(out / "onnx" / "model_fp16.onnx")["matmuls_touching_fp32"] == []
    ours = build_model(out, precision="fp16").encode(texts)
    assert _cosines(ours, reference).min() >= 0.999

    # 3. ONNX Runtime's CPU provider runs parts of an fp16 graph in fp32, so it proves little about
    # overflow (docs/architecture.md, "fp16 for T5"):
    # true fp16 arithmetic with torch .half() is the oracle. The same weight
    # changes as the export (embedding, o, wo x alpha; epsilon x alpha^2) keep it at cosine >= 0.999;
    # the model as is falls apart in fp16 even with transformers' fp16 clamp.
    def half(rescale: float):  # type: ignore[no-untyped-def]
        copy_ = copy.deepcopy(model)
        with torch.no_grad():
            for name, param in copy_.named_parameters():
                if name == "shared.weight" or name.endswith(("SelfAttention.o.weight", "DenseReluDense.wo.weight")):
                    param.mul_(rescale)
        for module in copy_.modules():
            if isinstance(module, transformers.models.t5.modeling_t5.T5LayerNorm):
                module.variance_epsilon *= rescale * rescale
        return copy_.half()

    rescaled = _t5_embeddings(half(alpha), tokenizer, texts)
    assert np.isfinite(rescaled).all() and _cosines(rescaled, reference).min() >= 0.999
    as_is = _t5_embeddings(half(1.0), tokenizer, texts)
    assert not np.isfinite(as_is).all() or _cosines(as_is, reference).min() < 0.99

    # 4. The naive ONNX conversion (everything fp16, no rescaling) gives inf/NaN even on the CPU provider.
    naive = tmp_path / "naive.onnx"
    to_fp16(out / "onnx" / "model_cpu_fused.onnx", naive, Architecture.T5_ENCODER, recipe="naive")
    runtime = build_model(out, precision="fp32")
    runtime.session = onnxruntime.InferenceSession(str(naive), providers=["CPUExecutionProvider"])
    assert not np.isfinite(runtime.encode(texts[:4])).all()


def test_rescaling_is_exact_in_fp32_and_refuses_a_graph_it_would_change(artifact) -> None:

    from jina_onnx.errors import ExportError
    from jina_onnx.export.fp16 import Peaks, choose_alpha, rescale_residual_stream, residual_stream

    path = artifact("s") / "onnx" / "model_cpu_fused.onnx"
    model = onnx.load(str(path))
    weights, _ = residual_stream(model.graph)
    assert len(weights) == 1 + 2 * layers_of(artifact("s"))  # the embedding, and o and wo of each layer
    # The function is unchanged: the same embeddings from the rescaled fp32 graph.
    rescale_residual_stream(model, 2.0**-8)
    feed = {
        "input_ids": np.array([[5, 6, 7, 8, 1], [9, 10, 1, 0, 0]]),
        "attention_mask": np.array([[1] * 5, [1, 1, 1, 0, 0]]),
    }
    before, after = pooled_before_after(path, model, feed)
    np.testing.assert_allclose(after, before, atol=1e-5)
    # Something other than a norm reading the residual stream would break that: refused.
    graph = model.graph
    norm = next(n for n in graph.node if n.op_type == "SkipSimplifiedLayerNormalization")
    graph.node.append(onnx.helper.make_node("Relu", [norm.input[0]], ["spy"], name="spy"))
    with pytest.raises(ExportError, match="spy .Relu. reads the residual stream"):
        residual_stream(graph)
    assert choose_alpha(Peaks(residual=100.0, other=1.0)) == 1.0
    assert choose_alpha(Peaks(residual=2.5e6, other=1.0)) == 2.0**-10


def test_variant_under_its_gate_is_not_written(checkpoint, tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setitem(GATES, Precision.INT8, Gate(mean_cosine=1.01))  # unreachable
    with caplog.at_level(logging.WARNING, logger="jina_onnx"):
        out = export_model(checkpoint("t"), tmp_path / "gated", precisions=["fp32", "int8"])
    manifest = load_manifest(out)
    assert Precision.INT8 not in manifest.variants and not (out / "onnx" / "model_quantized.onnx").exists()
    reason = manifest.rejected["int8"]
    assert "mean_cosine >= 1.01" in reason and "mean_cosine 0.99" in reason and "FFN output MatMuls" not in reason
    assert any("int8 missed its gate" in r.getMessage() for r in caplog.records)
    assert build_model(out, device="cpu").precision in ("fp32", "fp32-opt")  # auto never picks a rejected variant
    with pytest.raises(ArtifactError, match="int8 missed its gate"):
        build_model(out, precision="int8")


def test_no_optimize_writes_plain_variants(checkpoint, tmp_path: Path) -> None:
    out = export_model(checkpoint("t"), tmp_path / "plain", precisions=["fp32", "int8"], optimize=False)
    manifest = load_manifest(out)
    assert sorted(manifest.variants) == ["fp32", "int8"]
    assert manifest.variants[Precision.INT8].built_from.startswith("fp32, static int8")


def test_int8_falls_back_from_static_to_dynamic_to_weight_only(checkpoint, tmp_path: Path, monkeypatch, caplog) -> None:
    # Static int8 kept under its target (unreachable here) is not written; dynamic int8 moves a text's vector with
    # its batch (cosine ~0.9999): a stricter gate rejects it, and weight-only int8 (rows quantized alone) passes.
    # Each step records why the faster one was not kept, and the log does not say int8 was left out.
    from jina_onnx.export import static_int8

    monkeypatch.setattr(static_int8, "TARGET_MEAN_COSINE", 1.01)
    monkeypatch.setattr(static_int8, "FFN_ALPHAS", (0.75,))
    monkeypatch.setitem(GATES, Precision.INT8, Gate(mean_cosine=0.99, batch_invariance=0.99999))
    with caplog.at_level(logging.WARNING, logger="jina_onnx"):
        out = export_model(checkpoint("t"), tmp_path / "fallback", precisions=["fp32", "int8"], optimize=False)
    variant = load_manifest(out).variants[Precision.INT8]
    assert "weight-only" in variant.built_from and "batch_invariance" in variant.details["dynamic_rejected"]
    assert variant.details["static_rejected"].startswith("no static try kept mean cosine >= 1.01")
    tries = variant.details["static"]["tries"]  # every alpha, then the FFN outputs of 1, 2, 4 layers weight-only
    assert [t["weight_only"] for t in tries] == [0, 1, 2, 4] and all(t["mean_cosine"] < 1.01 for t in tries)
    assert [r.getMessage() for r in caplog.records if "int8" in r.getMessage()] == []


def test_bad_precision_list(checkpoint, tmp_path: Path) -> None:
    from jina_onnx.errors import ExportError

    with pytest.raises(ExportError, match="'bf16' is not one of fp32, fp32-opt, fp16, int8"):
        export_model(checkpoint("t"), tmp_path / "x", precisions=["fp32", "bf16"])
    assert not (tmp_path / "x").exists()


def test_minilm_sts_per_precision(minilm_artifact, minilm_sts) -> None:
    first, second, scores, fp32_first, fp32_second = minilm_sts
    spearman = {"fp32": sts_spearman(fp32_first, fp32_second, scores)}
    for precision in ("fp16", "int8"):  # judged by STS; fp32-opt is fp32's function, so by its vectors
        model = build_model(minilm_artifact, precision=precision)
        spearman[precision] = sts_spearman(
            model.encode(first, batch_size=64), model.encode(second, batch_size=64), scores
        )
    print("MiniLM STS-dev Spearman x100:", {k: round(v, 2) for k, v in spearman.items()})
    # fp32-opt on every 4th pair's sentences (750 of 3,000): within fp32's 1e-4 of the fp32 graph's vectors.
    fused = build_model(minilm_artifact, precision="fp32-opt")
    np.testing.assert_allclose(fused.encode(first[::4], batch_size=64), fp32_first[::4], atol=1e-4)
    np.testing.assert_allclose(fused.encode(second[::4], batch_size=64), fp32_second[::4], atol=1e-4)
    assert abs(spearman["fp16"] - spearman["fp32"]) <= 0.1
    assert abs(spearman["int8"] - spearman["fp32"]) <= 0.5  # static int8: +0.01 measured


@pytest.mark.parametrize("reduce_range", [True, False], ids=["7-bit, as exported for every class", "8-bit, VNNI only"])
def test_int8_for_each_cpu_class_passes_its_gate_and_the_export_says_where_it_measured(
    artifact, tmp_path: Path, reduce_range: bool
) -> None:
    """The exporter builds dynamic int8 with 7-bit weights whatever CPU exports it (exact on AVX2-only x86,
    where 8-bit weights saturate), and records the CPU class its gates ran on; both settings pass here."""
    import dataclasses
    import json
    import shutil

    from jina_onnx.export.variants import INT8_REDUCE_RANGE, to_int8
    from jina_onnx.machine import cpu_class
    from jina_onnx.manifest import sha256_file
    from jina_onnx.probe import probe_parity

    assert INT8_REDUCE_RANGE is True
    manifest = load_manifest(artifact("t"))
    assert manifest.extra["measured_on"]["cpu_class"] == cpu_class().name
    copy = shutil.copytree(artifact("t"), tmp_path / "t")
    int8 = manifest.variants[Precision.INT8]
    how = to_int8(copy / "onnx" / "model_cpu_fused.onnx", copy / int8.file, reduce_range=reduce_range)
    assert ("7-bit" in how) is reduce_range
    variant = dataclasses.replace(int8, sha256=sha256_file(copy / int8.file))
    dataclasses.replace(manifest, variants={**manifest.variants, Precision.INT8: variant}).save(copy)
    model = build_model(copy, device="cpu", precision="int8")
    probe = json.loads((copy / "probe.json").read_text())
    measured = probe_parity(
        lambda texts: model.encode(texts), probe["texts"], np.asarray(probe["embeddings"], np.float32), "torch fp32"
    )
    assert GATES[Precision.INT8].failures(measured) == [], measured
