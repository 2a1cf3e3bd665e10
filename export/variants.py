"""Deriving the optimized and int8 graphs from the traced fp32 graph (fp16 lives in `fp16.py`), and their gates."""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from jina_onnx.gates import GATES, Gate  # noqa: F401  (the exporter and tests use them from here)
from jina_onnx.registry import Architecture

from .fp16 import to_fp16  # noqa: F401  (kept importable from here)

log = logging.getLogger("jina_onnx")

# Fusions the CPU-optimized graph is expected to contain; tests pin the counts per architecture.
FUSED_OPS = (
    "EmbedLayerNormalization",
    "Attention",
    "MultiHeadAttention",
    "SkipLayerNormalization",
    "LayerNormalization",
    "BiasGelu",
    "FastGelu",
    "Gelu",
    "SimplifiedLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "RelativePositionBias",
)


def optimize_for_cpu(
    source: Path, target: Path, architecture: Architecture, num_heads: int, hidden_size: int, attention: bool = True
) -> dict[str, int]:
    """ONNX Runtime transformer fusions that have CPU kernels; returns the fused-op counts.

    BERT gets the full set (embedding, attention, skip layer norm, bias gelu). For T5 only the
    (skip) RMSNorm fusions are applied: ORT's T5 attention fusion emits RelativePositionBias,
    which has no CPU kernel (docs/architecture.md, pitfall 2), and its T5 model class applies that fusion
    unconditionally, so T5 graphs go through the BERT class with attention fusion off. `attention=False` keeps
    BERT's q, k and v as MatMuls too (static int8 quantizes them; the fused Attention op has no static form).
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_attention = attention
    if architecture is Architecture.T5_ENCODER:
        options.enable_attention = False
        options.enable_embed_layer_norm = False
    optimized = optimize_model(
        str(source),
        model_type="bert",
        num_heads=num_heads,
        hidden_size=hidden_size,
        optimization_options=options,
        opt_level=0,
        use_gpu=False,
    )
    optimized.save_model_to_file(str(target))
    return fused_op_counts(optimized.model)


def fused_op_counts(model: object) -> dict[str, int]:
    counts = collections.Counter(node.op_type for node in model.graph.node)  # type: ignore[attr-defined]
    return {op: counts[op] for op in FUSED_OPS if counts[op]}


@contextlib.contextmanager
def quiet_root_logger() -> Iterator[None]:
    """Hide INFO/WARNING chatter that ONNX Runtime's tools send to the root logger, for one block."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


# Dynamic int8 weights are 7-bit (reduce_range) whatever CPU exports them. Without VNNI, x86 multiplies u8 x s8
# in pairs summed into 16 bits (vpmaddubsw), which saturates with full-range weights; with VNNI, AMX or on arm64
# the full range is exact. An export may land on any of them, so the graph is built for the weakest: 7-bit
# weights are exact everywhere (an export used to follow the exporting CPU, which made a graph exported on a
# VNNI machine saturate on an AVX2-only one). The manifest records the class the gates were measured on.
INT8_REDUCE_RANGE = True


def to_int8_weight_only(source: Path, target: Path, block_size: int = 256) -> str:
    """int8 weights in blocks (MatMulNBits, 8 bits) with int8 compute (accuracy level 4).

    Its activations are quantized per row and block, so a text's vector does not depend on its batch
    neighbours, which dynamic quantization's one scale per call cannot promise. On the 2-core Xeon (AMX) it
    ran about as fast as fp32 (0.9-1.15x at 32 x 128 tokens) where dynamic int8 ran 1.5-2.2x: the exporter
    uses it only when static and dynamic int8 miss their gates. Blocks of 256: 1.08x blocks of 128 on the
    int8 GEMM (Zen 4).
    """
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, accuracy_level=4, bits=8)
    with quiet_root_logger():
        quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), algo_config=config, op_types_to_quantize=("MatMul",))
        quantizer.process()
        quantizer.model.save_model_to_file(str(target), use_external_data_format=False)
    return f"weight-only int8 (MatMulNBits, blocks of {block_size}, int8 compute), activations per row"


def ffn_output_matmuls(source: Path) -> list[str]:
    """The FFN output projections (BERT output.dense, T5 wo), first layer first: their post-activation inputs
    have the widest range, so they are the first to leave out of quantization when the gate needs it."""
    import onnx

    graph = onnx.load(str(source), load_external_data=False).graph
    return [
        n.name
        for n in graph.node
        if n.op_type == "MatMul"
        and ("DenseReluDense/wo" in n.name or ("/output/dense/" in n.name and "/attention/" not in n.name))
    ]


def to_int8(
    source: Path, target: Path, exclude: list[str] | None = None, reduce_range: bool = INT8_REDUCE_RANGE
) -> str:
    """Dynamic int8 quantization of MatMul (and fused Attention) weights, per channel."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_root_logger():  # the quantizer logs a line per tensor to the root logger
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=reduce_range,
            op_types_to_quantize=["MatMul", "Attention"],
            nodes_to_exclude=exclude or [],
            # Fused contrib ops hide their output types from shape inference; they are float.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    left_out = f", {len(exclude)} FFN output MatMuls left in fp32" if exclude else ""
    bits = (
        "7-bit (reduce_range: exact on every CPU class)" if reduce_range else "8-bit (exact only with VNNI/AMX/arm64)"
    )
    return f"dynamic int8, QInt8 weights per channel, {bits}{left_out}"


def speed_vs_fp32(fp32: Path, int8: Path, input_names: tuple[str, ...], rows: int = 8, tokens: int = 128) -> dict:
    """How much faster `int8` runs than `fp32` on this machine: best of 3 runs each of one batch of `rows` texts of
    `tokens` tokens (after a warm-up), all cores. Recorded in the manifest next to the CPU class it ran on."""
    import time

    import numpy as np
    import onnxruntime as ort

    ids = np.random.default_rng(0).integers(1000, 2000, (rows, tokens), dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    feed = {name: feed[name] for name in input_names}
    options = ort.SessionOptions()
    options.log_severity_level = 3
    seconds = {}
    for label, path in (("fp32", fp32), ("int8", int8)):
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        session.run(None, feed)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            session.run(None, feed)
            best = min(best, time.perf_counter() - start)
        seconds[label] = best
        del session
    return {
        "int8_vs_fp32": round(seconds["fp32"] / seconds["int8"], 2),
        "against": fp32.name,
        "shape": f"{rows} x {tokens} tokens",
        "fp32_ms": round(seconds["fp32"] * 1000, 1),
        "int8_ms": round(seconds["int8"] * 1000, 1),
    }
