"""The fp16 variant: every MatMul in fp16, kept overflow-safe for T5 by rescaling the residual stream.

Pretrained T5 drives its residual stream and FFN outputs past fp16's 65504 (docs/architecture.md,
"fp16 for T5"). The old guard kept the norms, Relu, residual Adds and `wo` in fp32, which cost 40-47% of the GPU. This module uses
T5's own symmetry instead: RMSNorm is scale-invariant, and only the token embedding, the attention output
projection `o` and the FFN output projection `wo` write into the residual stream. Multiplying those three
weights by alpha scales the whole stream by alpha; multiplying every norm's epsilon by alpha**2 makes the
model's function exactly the same:

    rmsnorm(alpha * x, eps * alpha**2) == x / sqrt(mean(x**2) + eps) * gamma == rmsnorm(x, eps)

So the export measures the peaks with fp32 ONNX Runtime on the probe and calibration texts, picks the largest
power of two alpha <= 1 that keeps the stream's peak under `SAFE_PEAK`, rescales, and converts everything to
fp16 except pooling. The fused (Skip)SimplifiedLayerNormalization ops accumulate the variance in fp32.

Example:
    >>> from jina_onnx.export.fp16 import to_fp16
    >>> to_fp16(Path("onnx/model_cpu_fused.onnx"), Path("onnx/model_fp16.onnx"), Architecture.T5_ENCODER, feeds)  # doctest: +SKIP
    Fp16Result(recipe='rescaled', alpha=0.0625, ...)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jina_onnx.errors import ExportError
from jina_onnx.registry import Architecture
from jina_onnx.tokenization import TextTokenizer

FP16_MAX = 65504.0
# Peaks are measured on a few dozen texts; real inputs can run hotter. 16x headroom (4 bits) keeps an
# input four times hotter than the hottest calibration text safe with room to spare, while costing
# ordinary activations only 4 of fp16's 15 bits of exponent range below 1.
SAFE_PEAK = FP16_MAX / 16
NORM_OPS = ("SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization")
# Names of the traced T5 projections that write into the residual stream.
RESIDUAL_WRITERS = ("/SelfAttention/o/MatMul", "/DenseReluDense/wo/MatMul")

# Texts beyond the probe set for measuring peaks: several domains, lengths, scripts and odd tokens.
CALIBRATION_TEXTS: tuple[str, ...] = (
    "A woman is slicing an onion in the kitchen.",
    "The stock market fell sharply on Tuesday after the central bank raised interest rates by 0.75%.",
    "def mean(xs):\n    return sum(xs) / len(xs)  # TODO: handle the empty list",
    "https://example.com/search?q=embedding+models&page=2 #hashtag @user",
    "Die Katze sitzt auf der Matte. Le chat est assis sur le tapis. El gato está en la alfombra.",
    "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 100 1000 10000 3.14159 2.71828",
    "!!!!! ????? ..... ----- ***** ##### $$$$$ %%%%% &&&&& ((((( )))))",
    "Photosynthesis converts light energy into chemical energy stored in glucose molecules.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "qwertyuiop asdfghjkl zxcvbnm lorem ipsum dolor sit amet consectetur adipiscing elit",
    "The patient presented with acute dyspnea, tachycardia and bilateral pulmonary infiltrates.",
    "Quantum entanglement describes correlations between particles that persist across distances. " * 8,
    "the the the the the the the the the the the the the the the the the the the the the the the",
    "Section 4(b)(ii): the Licensee shall indemnify the Licensor against all claims arising hereunder.",
    "我们今天去公园散步，天气非常好。 Сегодня хорошая погода. 오늘은 날씨가 좋습니다.",
    "In 1969, Apollo 11 landed on the Moon; Neil Armstrong and Buzz Aldrin walked on its surface. " * 24,
)


@dataclass(frozen=True)
class Peaks:
    """Largest absolute values seen in fp32, split by whether rescaling moves them."""

    residual: float  # the residual stream and what writes into it: scales with alpha
    other: float  # every other MatMul output (q, k, v, attention scores, FFN hidden): alpha leaves it as is


@dataclass(frozen=True)
class Fp16Result:
    """What `to_fp16` did, for the manifest."""

    recipe: str  # "rescaled" (all MatMuls fp16), "plain" (BERT: all but pooling), "islands" or "naive"
    alpha: float  # the residual-stream scale (1.0 where nothing was rescaled)
    peaks: Peaks | None
    description: str

    def details(self) -> dict[str, float | str]:
        out: dict[str, float | str] = {"recipe": self.recipe, "alpha": self.alpha}
        if self.peaks is not None:
            out |= {"residual_peak_fp32": self.peaks.residual, "other_peak_fp32": self.peaks.other}
        return out


def residual_stream(graph: Any) -> tuple[list[str], set[str]]:
    """(weights to scale, tensors that scale with them) of a fused T5 encoder graph.

    Raises ExportError when anything other than a norm or a residual Add reads the stream: then
    scaling it would change the model's function, and the caller must not rescale.
    """
    initializers = {i.name for i in graph.initializer}
    weights: list[str] = []
    scaled: set[str] = set()
    for node in graph.node:
        if node.op_type == "Gather" and node.input[1] == "input_ids" and node.input[0] in initializers:
            weights.append(node.input[0])  # the token embedding
            scaled.add(node.output[0])
        elif node.op_type == "MatMul" and any(w in node.name for w in RESIDUAL_WRITERS):
            if node.input[1] not in initializers:
                raise ExportError(f"{node.name}: its weight is not an initializer; cannot rescale")
            weights.append(node.input[1])
            scaled.add(node.output[0])
        elif node.op_type == "Add" and all(i in scaled for i in node.input):
            scaled.add(node.output[0])  # a residual Add: sum of two scaled tensors
        elif node.op_type == "SkipSimplifiedLayerNormalization" and len(node.output) > 3 and node.output[3]:
            scaled.add(node.output[3])  # its optional fourth output is the residual sum
    if not weights or not any(n.op_type in NORM_OPS for n in graph.node):
        raise ExportError("no fused T5 RMSNorm / residual writers found; rescaling needs the fused graph")
    readers_ok = {"Add": (0, 1), "SimplifiedLayerNormalization": (0,), "SkipSimplifiedLayerNormalization": (0, 1)}
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name in scaled and position not in readers_ok.get(node.op_type, ()):
                raise ExportError(
                    f"{node.name} ({node.op_type}) reads the residual stream; rescaling would change the model"
                )
            if name in scaled and node.op_type == "Add" and not all(i in scaled for i in node.input):
                raise ExportError(f"{node.name} adds an unscaled tensor to the residual stream")
    if any(o.name in scaled for o in graph.output):
        raise ExportError("a graph output is part of the residual stream; rescaling would change it")
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    shared = [w for w in weights if consumers.get(w, 0) != 1]
    if shared:
        raise ExportError(f"weights {shared[:3]} feed more than one node; cannot rescale them alone")
    return weights, scaled


def calibration_feeds(
    tokenizer: TextTokenizer, texts: Sequence[str], input_names: Sequence[str], batch: int = 8
) -> list[dict[str, np.ndarray]]:
    """Feeds for peak measurement: each text alone (long ones included), then padded batches of
    mixed lengths, because padded positions are computed too and can overflow as well."""
    tokens = tokenizer.tokenize(list(texts)).ids
    groups = [[ids] for ids in tokens]
    short = [ids for ids in tokens if len(ids) <= 64]
    groups += [short[i : i + batch] for i in range(0, len(short), batch)]
    feeds = []
    for group in groups:
        input_ids, attention_mask = tokenizer.pad(group)
        feed = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": np.zeros_like(input_ids)}
        feeds.append({name: feed[name] for name in input_names})
    return feeds


def activation_peaks(source: Path, feeds: Sequence[dict[str, np.ndarray]]) -> Peaks:
    """Run the fp32 graph on `feeds` with every MatMul output and residual tensor exposed; their peaks."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(source))
    _, scaled = residual_stream(model.graph)
    watched = scaled | {n.output[0] for n in model.graph.node if n.op_type == "MatMul"}
    present = {o.name for o in model.graph.output}
    for name in sorted(watched - present):
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs() if o.name in watched]
    residual = other = 0.0
    for feed in feeds:
        for name, value in zip(names, session.run(names, feed)):
            peak = float(np.abs(value).max()) if value.size else 0.0
            if not math.isfinite(peak):
                peak = math.inf
            if name in scaled:
                residual = max(residual, peak)
            else:
                other = max(other, peak)
    return Peaks(residual=residual, other=other)


def choose_alpha(peaks: Peaks, safe_peak: float = SAFE_PEAK) -> float:
    """The largest power of two <= 1 that brings the residual peak under `safe_peak`.

    The largest, because a smaller alpha pushes ordinary activations (and the scaled weights) toward
    fp16's subnormals, where precision is lost.

    Example:
        >>> choose_alpha(Peaks(residual=93_577.0, other=10.0))
        0.03125
    """
    if not math.isfinite(peaks.residual):
        raise ExportError("the fp32 residual stream is not finite on the calibration texts")
    if peaks.residual <= safe_peak:
        return 1.0
    return 2.0 ** -math.ceil(math.log2(peaks.residual / safe_peak))


def rescale_residual_stream(model: Any, alpha: float) -> int:
    """Scale the residual writers' weights by alpha and every norm's epsilon by alpha**2, in place.
    Returns how many weights were scaled. Exact in fp32: alpha is a power of two."""
    from onnx import numpy_helper

    weights, _ = residual_stream(model.graph)
    wanted = set(weights)
    for initializer in model.graph.initializer:
        if initializer.name in wanted:
            array = numpy_helper.to_array(initializer).astype(np.float32) * np.float32(alpha)
            initializer.CopyFrom(numpy_helper.from_array(array, initializer.name))
    for node in model.graph.node:
        if node.op_type in NORM_OPS:
            for attribute in node.attribute:
                if attribute.name == "epsilon":
                    attribute.f = attribute.f * alpha * alpha
    return len(weights)


def pooling_nodes(graph: Any) -> list[str]:
    """Nodes of the pooling head: the traced wrapper's own ops, named "/Op" rather than "/encoder/...".

    Pooling stays fp32 so a 512-token sum keeps its precision; it is a few element-wise ops.
    """
    return [n.name for n in graph.node if n.name.startswith("/") and not n.name.startswith("/encoder/")]


def islands_block_lists(graph: Any) -> tuple[list[str], list[str]]:
    """The old T5 recipe: norms, Relu, residual Adds and `wo` in fp32 (ORT's T5 mixed precision, plus
    transformers' `_keep_in_fp32_modules`). Used only when a measurement says rescaling cannot help."""
    keep_ops = [
        "SimplifiedLayerNormalization",
        "SkipSimplifiedLayerNormalization",
        "Relu",
        "Add",
        "Pow",
        "ReduceMean",
        "Sqrt",
        "Div",
        "Reciprocal",
    ]  # the last five: an unfused RMSNorm
    keep_nodes = pooling_nodes(graph) + [n.name for n in graph.node if "DenseReluDense/wo" in n.name]
    return keep_ops, keep_nodes


def to_fp16(
    source: Path,
    target: Path,
    architecture: Architecture,
    feeds: Sequence[dict[str, np.ndarray]] | None = None,
    recipe: str = "auto",
) -> Fp16Result:
    """Write the fp16 variant of `source` (fp32, fused for T5) to `target`, with fp32 inputs and outputs.

    recipe: "auto" (T5: "rescaled" unless the peaks say it cannot help, then "islands"; BERT: "plain"),
    or one of "rescaled", "islands", "plain" (everything but pooling) and "naive" (everything, for tests).
    `feeds` (from `calibration_feeds`) are needed for "rescaled" and "auto" on T5.
    """
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    if recipe == "auto":
        recipe = "rescaled" if architecture is Architecture.T5_ENCODER else "plain"
    alpha, peaks = 1.0, None
    model = onnx.load(str(source))
    if recipe == "rescaled":
        if feeds is None:
            raise ExportError("the rescaled fp16 recipe needs calibration feeds")
        peaks = activation_peaks(source, feeds)
        if peaks.other > SAFE_PEAK:
            # Attention scores or FFN hidden values beyond fp16: alpha does not move them.
            recipe = "islands"
        else:
            alpha = choose_alpha(peaks)
            rescale_residual_stream(model, alpha)
    if recipe == "rescaled" or recipe == "plain":
        keep_ops: list[str] = []
        keep_nodes = pooling_nodes(model.graph)
    elif recipe == "islands":
        keep_ops, keep_nodes = islands_block_lists(model.graph)
    elif recipe == "naive":
        keep_ops, keep_nodes = [], []
    else:
        raise ExportError(f"unknown fp16 recipe {recipe!r}")
    wrapped = OnnxModel(model)
    wrapped.convert_float_to_float16(
        keep_io_types=True, op_block_list=keep_ops, node_block_list=keep_nodes, use_symbolic_shape_infer=True
    )
    _drop_duplicate_casts(wrapped.model)
    wrapped.save_model_to_file(str(target))
    if recipe == "rescaled":
        assert peaks is not None  # measured above: the rescaled recipe needs them
        why = (
            f"residual stream x2^{int(math.log2(alpha))} (fp32 peaks: stream {peaks.residual:.4g}, "
            f"other MatMuls {peaks.other:.4g}); every MatMul fp16, pooling fp32"
        )
    elif recipe == "islands":
        why = f"fp16 with {len(keep_nodes)} nodes and ops {keep_ops} kept in fp32" + (
            f" (non-residual fp32 peak {peaks.other:.4g} > {SAFE_PEAK:.0f})" if peaks else ""
        )
    else:
        why = f"{recipe} fp16, {len(keep_nodes)} pooling nodes in fp32"
    return Fp16Result(recipe, alpha, peaks, why)


def _drop_duplicate_casts(model: Any) -> None:
    """The fp16 converter adds one Cast per blocked consumer of a tensor, all with the same name
    and output when a tensor feeds several blocked nodes; ORT then refuses the graph. Identical
    Casts are the same computation, so keeping the first is exact."""
    graph = model.graph
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
