"""The GEMM ceiling of this machine per precision, and each model's share of it (docs/performance.md, "CPU
classes").

    python -m benchmarks ceiling [--models t,s,b,l,minilm] [--threads N]

A model's layers are mostly matrix products by its weights (MatMul was 91% of s's fp32 time at 32 x 128
tokens on a 2-core AMD EPYC), so the fastest this CPU multiplies matrices of a model's shapes bounds how fast
any engine runs that model. For each precision one product per weight shape of the model is timed, 4,096
rows (32 texts of 128 tokens), with ONNX Runtime on the suite's threads:
- fp32: MatMul;
- int8: MatMulInteger (u8 activations x s8 weights -> int32): the int8 GEMM alone, without the quantizing
  and dequantizing around it;
- bf16: OpenVINO's MatMul in bf16, where OpenVINO is installed and the CPU has bf16 units.
A model's ceiling is its weight FLOPs over the time its mix of shapes takes at that speed; its share is the
weight FLOPs per second jina-onnx reaches encoding 32 texts of 128 tokens in that precision (attention's own
products, under 10% of the time at 128 tokens, are left out of both), over the ceiling.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import machine_facts, physical_cores, write_results

ROWS = 32 * 128  # texts x tokens of the suite's fixed128_b32 workload
# (hidden, ffn, layers) of the models; every layer multiplies by four hidden x hidden weights (q, k, v, o)
# and the two FFN weights.
SHAPES = {
    "t": (312, 1200, 4),
    "s": (512, 2048, 6),
    "b": (768, 3072, 12),
    "l": (1024, 4096, 24),
    "minilm": (384, 1536, 6),
}
PRECISIONS = ("fp32", "int8", "bf16")
CHAIN = 8  # bf16 is timed over a chain of products (see _matmul_graph)
ROUNDS = 3


def weight_products(model: str) -> list[tuple[int, int, int]]:
    """(k, n, count) of the model's weight MatMuls: count per forward pass."""
    hidden, ffn, layers = SHAPES[model]
    return [(hidden, hidden, 4 * layers), (hidden, ffn, layers), (ffn, hidden, layers)]


def weight_flops(model: str, rows: int | None = None) -> float:
    """Multiply-adds x 2 of the model's weight products for `rows` tokens (default ROWS)."""
    rows = ROWS if rows is None else rows
    return float(sum(2 * rows * k * n * count for k, n, count in weight_products(model)))


def _matmul_graph(path: Path, k: int, n: int, precision: str) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if precision == "int8":
        weights = numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), "w")
        node = helper.make_node("MatMulInteger", ["x", "w"], ["y"])
        x = helper.make_tensor_value_info("x", TensorProto.UINT8, ["rows", k])
        y = helper.make_tensor_value_info("y", TensorProto.INT32, ["rows", n])
    elif precision == "bf16":
        # CHAIN products, k -> n -> k -> ...: OpenVINO converts the input to bf16 and the output back, which on
        # one product cost more than the product (the models, converting once, ran faster than it).
        nodes, initializers, source = [], [], "x"
        for i in range(CHAIN):
            shape = (k, n) if i % 2 == 0 else (n, k)
            initializers.append(numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) / 32, f"w{i}"))
            nodes.append(helper.make_node("MatMul", [source, f"w{i}"], [f"h{i}"]))
            source = f"h{i}"
        nodes.append(helper.make_node("Identity", [source], ["y"]))
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", k])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", k])
        graph = helper.make_graph(nodes, "gemm", [x], [y], initializer=initializers)
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
        return
    else:
        weights = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")
        node = helper.make_node("MatMul", ["x", "w"], ["y"])
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", k])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", n])
    graph = helper.make_graph([node], "gemm", [x], [y], initializer=[weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)  # ORT 1.31 reads <= 13
    onnx.save(model, str(path))


def _runner(path: Path, precision: str, threads: int):  # type: ignore[no-untyped-def]
    """A function running the graph at `path` on one input (ONNX Runtime; OpenVINO for bf16)."""
    if precision == "bf16":
        import openvino

        core = openvino.Core()
        model = core.read_model(str(path))
        # One static shape, as the product of a compiled model of fixed shapes: with the rows left dynamic
        # OpenVINO chose a kernel at a third of what the models reach in bf16.
        model.reshape({model.input(0).get_any_name(): [ROWS, model.input(0).get_partial_shape()[1].get_length()]})
        compiled = core.compile_model(
            model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": threads}
        )
        request = compiled.create_infer_request()
        return lambda x: request.infer([x])
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})


def gemm_gflops(k: int, n: int, precision: str, threads: int, repeats: int = 7) -> float:
    """GFLOP/s (int8: giga integer multiply-adds x 2) of a ROWS x k by k x n product: the best of `repeats`."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (ROWS, k), dtype=np.uint8) if precision == "int8" else rng.random((ROWS, k), np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gemm.onnx"
        _matmul_graph(path, k, n, precision)
        run = _runner(path, precision, threads)
        run(x)  # the first call allocates and packs the weights
        best = min(_timed(run, x) for _ in range(repeats))
    return 2 * ROWS * k * n * (CHAIN if precision == "bf16" else 1) / best / 1e9


def _timed(run, x) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    run(x)
    return time.perf_counter() - start


def model_ceiling(model: str, speeds: dict[tuple[int, int], float]) -> float:
    """GFLOP/s of the model's weight products run at the measured speed of each shape."""
    seconds = sum(2 * ROWS * k * n * count / (speeds[(k, n)] * 1e9) for k, n, count in weight_products(model))
    return weight_flops(model) / seconds / 1e9


def model_gflops(model: str, precision: str, threads: int, repeats: int = 5) -> float | None:
    """Weight GFLOP/s jina-onnx reaches on 32 texts of 128 tokens in `precision` (None: not available here)."""
    from jina_onnx import build_model
    from jina_onnx.errors import JinaOnnxError

    from .runners import artifact_dir
    from .suite import tokenizer_for
    from .workloads import fixed_length_texts

    directory = artifact_dir(model)
    options = {"backend": "openvino", "precision": "bf16"} if precision == "bf16" else {"precision": precision}
    try:
        if precision == "fp32":
            options["precision"] = "fp32-opt"  # the fp32 graph `auto` runs: ONNX Runtime's fusions
        encoder = build_model(directory, device="cpu", threads=threads, **options)  # type: ignore[arg-type]
    except JinaOnnxError:
        return None
    texts = fixed_length_texts(tokenizer_for(model), 32)
    encoder.encode(texts, batch_size=32)
    best = min(_timed(lambda batch: encoder.encode(batch, batch_size=32), texts) for _ in range(repeats))
    return weight_flops(model) / best / 1e9


def measure(models: list[str], threads: int) -> dict[str, object]:
    from jina_onnx.engines import openvino
    from jina_onnx.machine import cpu_class

    precisions = [p for p in PRECISIONS if p != "bf16" or (cpu_class().bf16_units and openvino.installed())]
    shapes = sorted({(k, n) for model in models for k, n, _ in weight_products(model)})
    # A shared machine's speed drifts by a third over minutes, and a ratio of two timings taken minutes apart
    # would show it: the products and the models alternate, ROUNDS times, and each keeps its best.
    gemm: dict[str, dict[tuple[int, int], float]] = {p: dict.fromkeys(shapes, 0.0) for p in precisions}
    reached: dict[tuple[str, str], float | None] = {}
    for _ in range(ROUNDS):
        for p in precisions:
            gemm[p] = {shape: max(speed, gemm_gflops(*shape, p, threads)) for shape, speed in gemm[p].items()}
            for model in models:
                got = model_gflops(model, p, threads)
                best = reached.get((model, p))
                reached[(model, p)] = got if best is None or (got is not None and got > best) else best
    rows: dict[str, dict[str, object]] = {}
    for model in models:
        rows[model] = {}
        for precision in precisions:
            ceiling = model_ceiling(model, gemm[precision])
            got = reached[(model, precision)]
            rows[model][precision] = {
                "ceiling_gflops": round(ceiling, 1),
                "model_gflops": None if got is None else round(got, 1),
                "share": None if got is None else round(got / ceiling, 3),
            }
    return {
        "machine": machine_facts(),
        "threads": threads,
        "rows": ROWS,
        "gemm_gflops": {p: {f"{k}x{n}": round(v, 1) for (k, n), v in speeds.items()} for p, speeds in gemm.items()},
        "models": rows,
    }


def render(data: dict[str, object]) -> str:
    machine = data["machine"]
    assert isinstance(machine, dict)
    lines = [
        f"# GEMM ceiling: {machine['cpu']} ({machine.get('cpu_class', '?')}), {data['threads']} threads, "
        f"{machine['date']}",
        "",
        f"One product of {data['rows']:,} rows per weight shape (GFLOP/s, int8: 2 x multiply-adds):",
        "",
        "| precision | " + " | ".join(next(iter(data["gemm_gflops"].values()))) + " |",  # type: ignore[union-attr]
        "|---|" + "---|" * len(next(iter(data["gemm_gflops"].values()))),  # type: ignore[union-attr]
    ]
    for precision, speeds in data["gemm_gflops"].items():  # type: ignore[union-attr]
        lines.append(f"| {precision} | " + " | ".join(f"{v:,.0f}" for v in speeds.values()) + " |")
    lines += [
        "",
        "Each model at 32 x 128 tokens: its weight GFLOP/s through jina-onnx / its ceiling in that precision:",
        "",
        "| model | " + " | ".join(f"{p}" for p in next(iter(data["models"].values()))) + " |",  # type: ignore[union-attr]
        "|---|" + "---|" * len(next(iter(data["models"].values()))),  # type: ignore[union-attr]
    ]
    for model, cells in data["models"].items():  # type: ignore[union-attr]
        shown = [
            "n/a" if c["share"] is None else f"{c['model_gflops']:,.0f} / {c['ceiling_gflops']:,.0f} ({c['share']:.0%})"
            for c in cells.values()
        ]
        lines.append(f"| {model} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def command(models: list[str], threads: int | None) -> tuple[Path, Path]:
    data = measure(models, threads or physical_cores())
    slug = str(data["machine"]["cpu_class"]).lower().replace(" ", "-")  # type: ignore[index]
    stem = f"ceiling-{slug}-{dt.date.today().isoformat()}"
    return write_results(stem, data, render(data))
