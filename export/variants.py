"""Deriving the optimized, fp16 and int8 graphs from the traced fp32 graph, and their accuracy gates."""

from __future__ import annotations

import collections
import contextlib
import logging
import platform
from pathlib import Path
from typing import Iterator

from jina_onnx.gates import GATES, Gate  # noqa: F401  (the exporter and tests use them from here)
from jina_onnx.registry import Architecture

log = logging.getLogger("jina_onnx")

# Fusions the CPU-optimized graph is expected to contain; tests pin the counts per architecture.
FUSED_OPS = ("EmbedLayerNormalization", "Attention", "MultiHeadAttention", "SkipLayerNormalization",
             "LayerNormalization", "BiasGelu", "FastGelu", "Gelu", "SimplifiedLayerNormalization",
             "SkipSimplifiedLayerNormalization", "RelativePositionBias")


def optimize_for_cpu(source: Path, target: Path, architecture: Architecture, num_heads: int,
                     hidden_size: int) -> dict[str, int]:
    """ONNX Runtime transformer fusions that have CPU kernels; returns the fused-op counts.

    BERT gets the full set (embedding, attention, skip layer norm, bias gelu). For T5 only the
    (skip) RMSNorm fusions are applied: ORT's T5 attention fusion emits RelativePositionBias,
    which has no CPU kernel (design.md pitfall 2), and its T5 model class applies that fusion
    unconditionally, so T5 graphs go through the BERT class with attention fusion off.
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    if architecture is Architecture.T5_ENCODER:
        options.enable_attention = False
        options.enable_embed_layer_norm = False
    optimized = optimize_model(str(source), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                               optimization_options=options, opt_level=0, use_gpu=False)
    optimized.save_model_to_file(str(target))
    return fused_op_counts(optimized.model)


def fused_op_counts(model: object) -> dict[str, int]:
    counts = collections.Counter(node.op_type for node in model.graph.node)  # type: ignore[attr-defined]
    return {op: counts[op] for op in FUSED_OPS if counts[op]}


def fp16_block_lists(model: object, architecture: Architecture) -> tuple[list[str], list[str]]:
    """(op types, node names) that stay fp32 in the fp16 graph.

    Pooling (every node outside the encoder) stays fp32 so long inputs don't lose precision in
    the sum. For T5 this follows ORT's mixed-precision recipe (norms, Relu and the residual Adds
    in fp32) and, like transformers' `_keep_in_fp32_modules`, keeps the FFN output projection
    `wo` in fp32: pretrained T5 drives it past fp16's 65504, which turns the residual into inf
    and the next RMSNorm into NaN.
    """
    nodes = model.graph.node  # type: ignore[attr-defined]
    keep_nodes = [n.name for n in nodes if not n.name.startswith("/encoder/")]
    if architecture is not Architecture.T5_ENCODER:
        return [], keep_nodes
    keep_ops = ["SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization", "Relu", "Add",
                "Pow", "ReduceMean", "Sqrt", "Div", "Reciprocal"]  # the last five: an unfused RMSNorm
    keep_nodes += [n.name for n in nodes if "DenseReluDense/wo" in n.name]
    return keep_ops, keep_nodes


def to_fp16(source: Path, target: Path, architecture: Architecture, safe: bool = True) -> str:
    """Convert to fp16 with fp32 inputs/outputs; returns a description of the settings.

    `safe=False` converts every op (the naive recipe), kept for the overflow test.
    """
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(source)))
    keep_ops, keep_nodes = fp16_block_lists(model.model, architecture) if safe else ([], [])
    model.convert_float_to_float16(keep_io_types=True, op_block_list=keep_ops, node_block_list=keep_nodes,
                                   use_symbolic_shape_infer=True)
    _drop_duplicate_casts(model.model)
    model.save_model_to_file(str(target))
    return f"fp16 with {len(keep_nodes)} nodes and ops {keep_ops} kept in fp32"


def _drop_duplicate_casts(model: object) -> None:
    """The fp16 converter adds one Cast per blocked consumer of a tensor, all with the same name
    and output when a tensor feeds several blocked nodes; ORT then refuses the graph. Identical
    Casts are the same computation, so keeping the first is exact."""
    graph = model.graph  # type: ignore[attr-defined]
    seen: dict[tuple[str, ...], tuple[tuple[str, ...], int]] = {}
    kept = []
    for node in graph.node:
        if node.op_type == "Cast":
            key, signature = tuple(node.output), (tuple(node.input), node.attribute[0].i)
            if key in seen:
                if seen[key] != signature:
                    raise RuntimeError(f"fp16 conversion produced two different Casts writing {key}")
                continue
            seen[key] = signature
        kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


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


def ffn_output_matmuls(source: Path) -> list[str]:
    """The FFN output projections (BERT output.dense, T5 wo): their post-activation inputs have the
    widest range, so they are the first to leave out of quantization when the gate needs it."""
    import onnx

    graph = onnx.load(str(source), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul" and (
        "DenseReluDense/wo" in n.name or ("/output/dense/" in n.name and "/attention/" not in n.name))]


def to_int8(source: Path, target: Path, exclude: list[str] | None = None) -> str:
    """Dynamic int8 quantization of MatMul (and fused Attention) weights, per channel."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    reduce_range, cpu = int8_settings()
    with quiet_root_logger():  # the quantizer logs a line per tensor to the root logger
        quantize_dynamic(
            str(source), str(target), weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range,
            op_types_to_quantize=["MatMul", "Attention"], nodes_to_exclude=exclude or [],
            # Fused contrib ops hide their output types from shape inference; they are float.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    left_out = f", {len(exclude)} FFN output MatMuls left in fp32" if exclude else ""
    return f"dynamic int8, QInt8 weights per channel, reduce_range={reduce_range} ({cpu}){left_out}"
