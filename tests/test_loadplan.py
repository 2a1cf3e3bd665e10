"""The load decision as a table: request x machine facts -> plan, without loading a model."""

from __future__ import annotations

import pytest

from jina_onnx.errors import ArtifactError, DeviceError, InputError, MissingDependencyError
from jina_onnx.loadplan import CUDA, Facts, Option, Request, plan_load

CPU_ONLY = ("CPUExecutionProvider",)
WITH_CUDA = (CUDA, "CPUExecutionProvider")
ALL = ("fp32", "fp32-opt", "fp16", "int8")
CPU_SPEEDS = {"onnxruntime int8 on cpu": 900.0, "onnxruntime fp32-opt on cpu": 1000.0, "onnxruntime fp32 on cpu": 700.0}
WITH_OV = {**CPU_SPEEDS, "openvino bf16 on cpu": 1500.0, "openvino fp32 on cpu": 800.0}


def ort(device: str, variant: str) -> Option:
    return Option("onnxruntime", device, variant, variant)


def ov(variant: str, arithmetic: str) -> Option:
    return Option("openvino", "cpu", variant, arithmetic)


# (request, facts, what the plan says: an Option to load, ("measure", options), ("check_bf16", option))
CASES = [
    # 1-4: named precisions on ONNX Runtime load that file, whatever was measured
    (Request("cpu", "int8"), Facts(variants=ALL), ort("cpu", "int8")),
    (Request("cpu", "fp32"), Facts(variants=ALL), ort("cpu", "fp32")),
    (Request("cuda", "fp16"), Facts(variants=ALL, providers=WITH_CUDA), ort("cuda", "fp16")),
    (Request("auto", "fp32-opt"), Facts(variants=ALL), ort("cpu", "fp32-opt")),
    # 5-8: auto on a CPU: measured speeds decide, never the fixed order
    (Request("cpu"), Facts(variants=ALL, speeds=CPU_SPEEDS), ort("cpu", "fp32-opt")),
    (Request("cpu"), Facts(variants=ALL, speeds={**CPU_SPEEDS, "onnxruntime int8 on cpu": 2000.0}), ort("cpu", "int8")),
    (
        Request("cpu"),
        Facts(variants=ALL),
        ("measure", (ort("cpu", "int8"), ort("cpu", "fp32-opt"))),  # fp32-opt stands for the fp32 graph
    ),
    (Request("cpu"), Facts(variants=("fp32", "int8")), ("measure", (ort("cpu", "int8"), ort("cpu", "fp32")))),
    (Request("cpu"), Facts(variants=("fp32",)), ort("cpu", "fp32")),  # one candidate: nothing to measure
    # 9-10: auto on CUDA: fp16 against fp32, measured
    (
        Request("cuda"),
        Facts(variants=ALL, providers=WITH_CUDA),
        ("measure", (ort("cuda", "fp16"), ort("cuda", "fp32"))),
    ),
    (
        Request("auto"),
        Facts(
            variants=ALL,
            providers=WITH_CUDA,
            speeds={"onnxruntime fp16 on cuda": 9000.0, "onnxruntime fp32 on cuda": 3000.0},
        ),
        ort("cuda", "fp16"),
    ),
    # 11-12: device auto without CUDA runs on the CPU
    (Request("auto", "int8"), Facts(variants=ALL), ort("cpu", "int8")),
    (Request("cpu", "int8"), Facts(variants=ALL, providers=WITH_CUDA), ort("cpu", "int8")),  # CPU asked for: CPU
    (Request("auto"), Facts(variants=ALL, speeds=CPU_SPEEDS), ort("cpu", "fp32-opt")),
    # 13-17: OpenVINO installed, backend auto: it is one more candidate on the CPU
    (
        Request("cpu"),
        Facts(variants=ALL, openvino=True, bf16_units=True, bf16_gate=True, speeds=WITH_OV),
        ov("fp32-opt", "bf16"),
    ),
    (Request("cpu"), Facts(variants=ALL, openvino=True, bf16_units=True), ("check_bf16", ov("fp32-opt", "bf16"))),
    (
        Request("cpu"),
        Facts(variants=ALL, openvino=True, bf16_units=True, bf16_gate=False, speeds=WITH_OV),
        ort("cpu", "fp32-opt"),
    ),  # bf16 missed its gate: OpenVINO competes in fp32 (800), ONNX Runtime wins (1000)
    (
        Request("cpu"),
        Facts(variants=ALL, openvino=True, bf16_units=False, speeds=CPU_SPEEDS),
        ("measure", (ort("cpu", "int8"), ort("cpu", "fp32-opt"), ov("fp32-opt", "fp32"))),
    ),
    (Request("cpu", "int8"), Facts(variants=ALL, openvino=True, bf16_units=True, bf16_gate=True), ort("cpu", "int8")),
    # 18-19: the objective selects which measurements count (the facts hold that objective's speeds)
    (
        Request("cpu", objective="latency"),
        Facts(
            variants=ALL,
            openvino=True,
            bf16_units=True,
            bf16_gate=True,
            speeds={**WITH_OV, "openvino bf16 on cpu": 400.0},
        ),
        ort("cpu", "fp32-opt"),
    ),
    (
        Request("cpu", "fp32"),
        Facts(
            variants=ALL,
            openvino=True,
            bf16_units=True,
            bf16_gate=True,
            speeds={"onnxruntime fp32 on cpu": 700.0, "openvino fp32 on cpu": 800.0},
        ),
        ov("fp32-opt", "fp32"),
    ),  # fp32 means fp32 arithmetic: OpenVINO fp32 may run it, never bf16
    # 20-24: backend openvino / precision bf16
    (
        Request("cpu", "bf16", "openvino"),
        Facts(variants=ALL, openvino=True, bf16_units=True, bf16_gate=True),
        ov("fp32-opt", "bf16"),
    ),
    (
        Request("auto", "bf16"),
        Facts(variants=("fp32", "int8"), openvino=True, bf16_units=True, bf16_gate=True),
        ov("fp32", "bf16"),
    ),  # no fused graph: the plain one
    (Request("cpu", "fp32", "openvino"), Facts(variants=ALL, openvino=True, bf16_units=True), ov("fp32-opt", "fp32")),
    (Request("cpu", "auto", "openvino"), Facts(variants=ALL, openvino=True, bf16_units=False), ov("fp32-opt", "fp32")),
    (
        Request("cpu", "auto", "openvino"),
        Facts(variants=ALL, openvino=True, bf16_units=True, bf16_gate=False),
        ov("fp32-opt", "fp32"),
    ),
    # 25-26: $JINA_ONNX_BACKEND decides what backend "auto" means
    (
        Request("cpu"),
        Facts(variants=ALL, openvino=True, bf16_units=True, bf16_gate=True, env_backend="openvino"),
        ov("fp32-opt", "bf16"),
    ),
    (
        Request("cpu", "fp32"),
        Facts(variants=ALL, openvino=True, bf16_units=True, env_backend="onnxruntime"),
        ort("cpu", "fp32"),
    ),
]


@pytest.mark.parametrize(("request_", "facts", "expected"), CASES, ids=[f"case{i + 1}" for i in range(len(CASES))])
def test_load_plan_table(request_: Request, facts: Facts, expected: object) -> None:
    plan = plan_load(request_, facts)
    assert plan.reason  # every decision says why
    if isinstance(expected, Option):
        assert plan.choice == expected and not plan.measure and plan.check_bf16 is None
    elif expected[0] == "measure":
        assert plan.choice is None and plan.measure == expected[1]
    else:
        assert plan.choice is None and plan.check_bf16 == expected[1]


# (request, facts, error type, words the message must contain)
REFUSALS = [
    (Request("cuda"), Facts(variants=ALL), DeviceError, "jina-onnx[gpu]"),
    (Request("cpu", "fp16x"), Facts(), InputError, "precision='fp16x'"),
    (Request("cpu", backend="tensorrt"), Facts(), InputError, "backend='tensorrt'"),
    (Request("cpu", objective="speed"), Facts(), InputError, "objective='speed'"),
    (
        Request("cpu", "int8"),
        Facts(variants=("fp32",), rejected={"int8": "missed its gate"}),
        ArtifactError,
        "missed its gate",
    ),
    (Request("cpu", "fp32-opt"), Facts(variants=("fp32",)), ArtifactError, "--optimize"),
    (Request("cpu", "bf16", "onnxruntime"), Facts(variants=ALL), InputError, "runs on OpenVINO"),
    (Request("cuda", "auto", "openvino"), Facts(variants=ALL, openvino=True), DeviceError, "device='cpu'"),
    (Request("cpu", "int8", "openvino"), Facts(variants=ALL, openvino=True), InputError, "backend='onnxruntime'"),
    (Request("cpu", "bf16"), Facts(variants=ALL, openvino=False), MissingDependencyError, "jina-onnx[openvino]"),
    (Request("cpu", "bf16"), Facts(variants=ALL, openvino=True, bf16_units=False), DeviceError, "no bf16 units"),
    (
        Request("cpu", "bf16"),
        Facts(variants=ALL, openvino=True, bf16_units=True, bf16_gate=False),
        ArtifactError,
        "misses its gate",
    ),
    (Request("cpu"), Facts(variants=ALL, env_backend="tensorrt"), InputError, "$JINA_ONNX_BACKEND"),
]


@pytest.mark.parametrize(("request_", "facts", "error", "words"), REFUSALS)
def test_load_plan_refusals_name_the_fix(request_: Request, facts: Facts, error: type, words: str) -> None:
    with pytest.raises(error) as raised:
        plan_load(request_, facts)
    assert words in str(raised.value)


def test_auto_never_runs_a_variant_slower_than_the_fp32_graph() -> None:
    # Whatever the speeds, the choice is at least as fast as the fp32 graph it was measured against (fp32-opt
    # where the artifact has it, else fp32).
    import itertools

    for variants in (ALL, ("fp32", "int8"), ("fp32-opt", "int8")):
        graph = "fp32-opt" if "fp32-opt" in variants else "fp32"
        for int8, opt, plain in itertools.product((500.0, 1000.0, 1500.0), repeat=3):
            speeds = {
                "onnxruntime int8 on cpu": int8,
                "onnxruntime fp32-opt on cpu": opt,
                "onnxruntime fp32 on cpu": plain,
            }
            choice = plan_load(Request("cpu"), Facts(variants=variants, speeds=speeds)).choice
            assert choice is not None and speeds[choice.label] >= speeds[f"onnxruntime {graph} on cpu"]


def test_openvino_facts_are_gathered_only_where_it_may_run() -> None:
    from jina_onnx.loadplan import may_run_openvino

    installed = Facts(openvino=True)
    assert may_run_openvino(Request("cpu"), installed)
    assert not may_run_openvino(Request("cpu"), Facts(openvino=False))
    assert not may_run_openvino(Request("cpu", backend="onnxruntime"), installed)
    assert not may_run_openvino(Request("cuda"), installed)
    assert not may_run_openvino(Request("cpu"), Facts(openvino=True, env_backend="onnxruntime"))
    assert may_run_openvino(Request("cpu", backend="openvino"), Facts(openvino=True, env_backend="onnxruntime"))


def test_int8_named_where_it_is_slower_than_fp32_says_so_and_still_runs() -> None:
    int8 = Request("cpu", "int8")
    measured_slower = plan_load(int8, Facts(name="t", variants=ALL, speeds=CPU_SPEEDS, cpu_class="x86 AVX2"))
    assert measured_slower.choice == ort("cpu", "int8")  # what was asked
    assert "int8 measured 900 texts/s on this CPU (x86 AVX2), fp32 1,000" in measured_slower.warning
    # Not measured here yet: the CPU's class says what to expect.
    no_units = plan_load(int8, Facts(variants=ALL, cpu_class="x86 AVX2", int8_units=False))
    assert no_units.choice == ort("cpu", "int8") and "no int8 dot-product units" in no_units.warning
    faster = {**CPU_SPEEDS, "onnxruntime int8 on cpu": 2000.0}
    assert plan_load(int8, Facts(variants=ALL, speeds=faster, int8_units=False)).warning == ""  # measured wins
    assert plan_load(int8, Facts(variants=ALL, int8_units=True)).warning == ""
    assert plan_load(Request("cpu", "fp32"), Facts(variants=ALL, int8_units=False)).warning == ""
    assert plan_load(Request("cpu"), Facts(variants=ALL, speeds=CPU_SPEEDS, int8_units=False)).warning == ""


def test_cpu_classes_from_cpuid_and_flags() -> None:
    from jina_onnx.machine import CpuClass, _x86_features

    every = {"avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16"}
    cpuid = {"AVX2": True, "FMA3": True, "AVX512F": True, "AVX512VNNI": True, "AVX512BF16": True}
    assert CpuClass("x86_64", _x86_features(every, cpuid)).name == "x86 AMX"
    # QEMU user mode emulating a Haswell on that host: /proc/cpuinfo is the host's, CPUID the Haswell's.
    haswell = {"AVX2": True, "FMA3": True, "AVX512F": False, "AVX512VNNI": False, "AVX512BF16": False}
    emulated = CpuClass("x86_64", _x86_features(every, haswell))  # the host's avx_vnni and amx flags do not leak
    assert (emulated.name, emulated.int8_units, emulated.bf16_units) == ("x86 AVX2", False, False)
    zen4 = CpuClass("x86_64", _x86_features(every - {"amx_int8", "amx_bf16", "avx_vnni"}, cpuid))
    assert (zen4.name, zen4.int8_units) == ("x86 AVX-512 bf16", True)
    assert CpuClass("x86_64", ("avx2", "fma", "avx512f", "avx512_vnni")).name == "x86 AVX-512 VNNI"
    graviton3 = CpuClass("arm64", ("asimd", "dotprod", "sve", "i8mm", "bf16"))
    assert (graviton3.name, graviton3.int8_units, graviton3.bf16_units) == ("arm64 dotprod i8mm bf16 sve", True, True)
    assert CpuClass("arm64", ("asimd",)).int8_units is False  # a Raspberry Pi 3's Cortex-A53
