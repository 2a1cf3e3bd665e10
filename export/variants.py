"""Deriving the optimized and int8 graphs from the traced fp32 graph (fp16 lives in `fp16.py`), and their gates."""

from __future__ import annotations

import collections
import contextlib
import logging
import platform
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
    source: Path, target: Path, architecture: Architecture, num_heads: int, hidden_size: int
) -> dict[str, int]:
    """ONNX Runtime transformer fusions that have CPU kernels; returns the fused-op counts.

    BERT gets the full set (embedding, attention, skip layer norm, bias gelu). For T5 only the
    (skip) RMSNorm fusions are applied: ORT's T5 attention fusion emits RelativePositionBias,
    which has no CPU kernel (docs/architecture.md, pitfall 2), and its T5 model class applies that fusion
    unconditionally, so T5 graphs go through the BERT class with attention fusion off.
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
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


def int8_settings(machine: str | None = None, cpu_flags: str | None = None) -> tuple[bool, str]:
    """(reduce_range, description) for this CPU (or the one described by the arguments).

    Without VNNI, x86 multiplies u8 x s8 with 16-bit saturation (vpmaddubsw), so ORT recommends
    7-bit weights (reduce_range); with VNNI (avx512_vnni / avx_vnni) or on arm64 the full range is exact.
    """
    machine = (machine or platform.machine()).lower()
    if machine in ("arm64", "aarch64"):
        return False, "arm64"
    if cpu_flags is None:
        try:
            cpu_flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpu_flags = ""
    flags = set(cpu_flags.split())
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return False, "x86 with VNNI"
    return True, "x86 without VNNI (reduce_range)"


def to_int8_weight_only(source: Path, target: Path, block_size: int = 128) -> str:
    """int8 weights in blocks (MatMulNBits, 8 bits) with int8 compute (accuracy level 4).

    Its activations are quantized per row and block, so a text's vector does not depend on its batch
    neighbours, which dynamic quantization's one scale per call cannot promise. On the 2-core Xeon (AMX) it
    ran about as fast as fp32 (0.9-1.15x at 32 x 128 tokens) where dynamic int8 ran 1.5-2.2x: the exporter
    uses it only when dynamic int8 misses its gate.
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
    """The FFN output projections (BERT output.dense, T5 wo): their post-activation inputs have the
    widest range, so they are the first to leave out of quantization when the gate needs it."""
    import onnx

    graph = onnx.load(str(source), load_external_data=False).graph
    return [
        n.name
        for n in graph.node
        if n.op_type == "MatMul"
        and ("DenseReluDense/wo" in n.name or ("/output/dense/" in n.name and "/attention/" not in n.name))
    ]


def to_int8(source: Path, target: Path, exclude: list[str] | None = None) -> str:
    """Dynamic int8 quantization of MatMul (and fused Attention) weights, per channel."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    reduce_range, cpu = int8_settings()
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
    return f"dynamic int8, QInt8 weights per channel, reduce_range={reduce_range} ({cpu}){left_out}"
