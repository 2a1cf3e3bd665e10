"""What `build_model` loads, decided in one place: a pure function from the request and the facts of this
machine to a plan. Nothing here loads a model, times one or reads a file; `loader.py` gathers the facts,
carries out what the plan asks for (a bf16 gate check, a measurement) and plans again with the answer.

The rules (docs/architecture.md, "The load decision", has them as a table):

- `backend="openvino"` or `precision="bf16"`: OpenVINO on the CPU, running the fused fp32 graph (`fp32-opt`)
  where the artifact has it, else `fp32`; in bf16 where the CPU has bf16 units, bf16 passed its gate here and
  the caller did not ask for fp32.
- A named precision with ONNX Runtime runs that variant; a missing one is an error saying how to re-export.
- `precision="auto"` (and, on a CPU with OpenVINO installed, `backend="auto"`) has candidates: the gated
  variants for the device (CPU: int8 and one fp32 graph, fp32-opt where the artifact has it, else fp32; CUDA:
  fp16, fp32) and OpenVINO's option. The fastest one *measured on this machine for the objective* runs: never a
  variant slower than the fp32 graph. Until the speeds are known the plan asks for a measurement
  (`Plan.measure`), done once, one candidate at a time, briefly, and cached (`loader.settle`).
- Objectives: "throughput" (batches of 32 texts, a corpus job's or a batch caller's view) or "latency"
  (one short text per call, what a server answering single queries sees).

Example:
    >>> facts = Facts(variants=("fp32", "fp32-opt", "int8"), speeds={"onnxruntime int8 on cpu": 900.0,
    ...     "onnxruntime fp32-opt on cpu": 1000.0, "onnxruntime fp32 on cpu": 700.0})
    >>> plan = plan_load(Request(device="cpu"), facts)
    >>> plan.choice.label, plan.choice.variant
    ('onnxruntime fp32-opt on cpu', 'fp32-opt')
    >>> plan_load(Request(device="cpu"), Facts(variants=("fp32", "int8"))).measure  # speeds not known yet
    (Option(engine='onnxruntime', device='cpu', variant='int8', precision='int8'), \
Option(engine='onnxruntime', device='cpu', variant='fp32', precision='fp32'))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import ArtifactError, DeviceError, InputError, MissingDependencyError

DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("auto", "onnxruntime", "openvino")
OBJECTIVES = ("throughput", "latency")
# "bf16" is not a file: it is the fp32 graph run by OpenVINO with bf16 arithmetic.
PRECISIONS = ("auto", "fp32", "fp32-opt", "fp16", "int8", "bf16")
# The variants precision="auto" may run on ONNX Runtime, per device; the choice among them is measured (the
# order only lists them, and a Ray job's CUDA actors, which the driver cannot measure, take the first).
CANDIDATES = {"cpu": ("int8", "fp32-opt", "fp32"), "cuda": ("fp16", "fp32")}
OPENVINO_GRAPHS = ("fp32-opt", "fp32")  # the graph OpenVINO runs, preferred first
CUDA = "CUDAExecutionProvider"


@dataclass(frozen=True)
class Request:
    """What the caller asked `build_model` for."""

    device: str = "auto"  # "auto", "cpu", "cuda"
    precision: str = "auto"  # a variant, "bf16" or "auto"
    backend: str = "auto"  # "auto", "onnxruntime", "openvino"
    objective: str = "throughput"  # what "auto" optimizes: "throughput" or "latency"


@dataclass(frozen=True)
class Facts:
    """What is true of this machine and this artifact, gathered by `loader.facts`."""

    name: str = "the artifact"  # the model's name, for messages
    variants: tuple[str, ...] = ("fp32",)  # the artifact's gated variants
    providers: tuple[str, ...] = ("CPUExecutionProvider",)  # what this onnxruntime build offers
    rejected: Mapping[str, str] = field(default_factory=dict)  # variant -> why the export dropped it
    openvino: bool = False  # OpenVINO is installed
    bf16_units: bool = False  # the CPU has bf16 units (AMX, AVX512-BF16); only known where OpenVINO is
    bf16_gate: bool | None = None  # bf16 on OpenVINO met its gate on this CPU; None: not checked yet
    bf16_failure: str = ""  # how it missed, where it did
    speeds: Mapping[str, float] = field(default_factory=dict)  # Option.label -> texts/s measured here
    env_backend: str = ""  # $JINA_ONNX_BACKEND: what backend="auto" means when set
    cpu_class: str = ""  # machine.CpuClass.name, for messages
    int8_units: bool = True  # the CPU multiplies int8 without saturation (VNNI, AMX, arm64 dotprod / i8mm)


@dataclass(frozen=True)
class Option:
    """One way to run the model: an engine, a device, the artifact's file (`variant`) and its arithmetic."""

    engine: str  # "onnxruntime" or "openvino"
    device: str  # "cpu" or "cuda"
    variant: str  # the manifest variant whose file runs
    precision: str  # what the model reports: the variant on ONNX Runtime, "fp32" or "bf16" on OpenVINO

    @property
    def label(self) -> str:
        return f"{self.engine} {self.precision} on {self.device}"


@dataclass(frozen=True)
class Plan:
    """What to load, or what to find out first (then plan again)."""

    objective: str
    choice: Option | None  # None while `measure` or `check_bf16` is pending
    reason: str
    measure: tuple[Option, ...] = ()  # time these against each other for `objective`
    check_bf16: Option | None = None  # run bf16's gate with this option
    warning: str = ""  # what the caller should hear about the choice (it still runs what was asked)


def plan_load(request: Request, facts: Facts) -> Plan:
    """The plan for `request` on a machine and artifact described by `facts` (see the module docstring)."""
    check(request)
    backend, why = request.backend, ""
    if backend == "auto" and facts.env_backend:
        if facts.env_backend not in BACKENDS:
            raise InputError(f"$JINA_ONNX_BACKEND={facts.env_backend!r} is not one of {', '.join(BACKENDS)}")
        backend, why = facts.env_backend, f"$JINA_ONNX_BACKEND={facts.env_backend}; "
    if backend == "openvino" or request.precision == "bf16":
        if backend == "onnxruntime":
            raise InputError(
                "precision='bf16' runs on OpenVINO: use backend='openvino' (or 'auto'), not backend='onnxruntime'"
            )
        return _openvino_plan(request, facts, why)
    device = _device(request.device, facts.providers)
    candidates = _onnxruntime_options(request.precision, device, facts)
    if device == "cpu" and backend == "auto" and facts.openvino and request.precision in ("auto", "fp32"):
        option = _openvino_option(request.precision, facts)
        if option is not None:
            if option.precision == "bf16" and facts.bf16_gate is None:
                return Plan(
                    request.objective,
                    None,
                    why + "bf16 on OpenVINO is a candidate: check its gate first",
                    check_bf16=option,
                )
            candidates += (option,)
    if len(candidates) == 1:
        choice = candidates[0]
        return Plan(request.objective, choice, why + _single_reason(request, choice), warning=_slow_int8(choice, facts))
    known = {c.label: facts.speeds[c.label] for c in candidates if c.label in facts.speeds}
    if len(known) < len(candidates):
        return Plan(
            request.objective,
            None,
            why + f"{len(candidates)} candidates for {request.objective}: measure them on this machine",
            measure=candidates,
        )
    best = max(candidates, key=lambda c: known[c.label])
    measured = ", ".join(f"{label} {speed:,.0f}" for label, speed in sorted(known.items(), key=lambda kv: -kv[1]))
    return Plan(request.objective, best, why + f"fastest for {request.objective} on this machine (texts/s: {measured})")


def may_run_openvino(request: Request, facts: Facts) -> bool:
    """Whether any plan for `request` could involve OpenVINO (so its facts are worth gathering)."""
    backend = facts.env_backend if request.backend == "auto" and facts.env_backend else request.backend
    return facts.openvino and backend != "onnxruntime" and request.device != "cuda"


def check(request: Request) -> None:
    """InputError naming the value when a request field is not one of its choices."""
    for name, value, allowed in (
        ("device", request.device, DEVICES),
        ("precision", request.precision, PRECISIONS),
        ("backend", request.backend, BACKENDS),
        ("objective", request.objective, OBJECTIVES),
    ):
        if value not in allowed:
            raise InputError(f"{name}={value!r} is not one of {', '.join(allowed)}")


def _device(device: str, providers: tuple[str, ...]) -> str:
    if device == "cpu":
        return "cpu"
    if CUDA in providers:
        return "cuda"
    if device == "cuda":
        raise DeviceError(
            f"device='cuda' but this onnxruntime offers only {', '.join(providers) or 'no providers'}; "
            'install the CUDA build with pip install "jina-onnx[gpu]" (and uninstall onnxruntime), '
            "or use device='cpu'"
        )
    return "cpu"


def _onnxruntime_options(precision: str, device: str, facts: Facts) -> tuple[Option, ...]:
    if precision != "auto":
        if precision not in facts.variants:
            raise _missing(precision, facts)
        return (Option("onnxruntime", device, precision, precision),)
    present = tuple(Option("onnxruntime", device, v, v) for v in CANDIDATES[device] if v in facts.variants)
    if {"fp32-opt", "fp32"} <= {o.variant for o in present}:
        # One fp32 graph stands for both: fp32-opt is fp32 with ONNX Runtime's CPU fusions (as fast or faster,
        # within noise, in every run so far), and each candidate costs a session and a timing at first load.
        present = tuple(o for o in present if o.variant != "fp32")
    if not present:
        raise _missing("fp32", facts)
    return present


def _openvino_plan(request: Request, facts: Facts, why: str) -> Plan:
    if request.device == "cuda":
        raise DeviceError(
            "backend='openvino' runs on the CPU, not 'cuda'; use device='cpu' (or backend='onnxruntime' for CUDA)"
        )
    if request.precision not in ("auto", "fp32", "bf16"):
        raise InputError(
            f"precision={request.precision!r} is an ONNX Runtime variant; OpenVINO runs the fp32 graph "
            f"in fp32 or bf16: use backend='onnxruntime' for {request.precision}"
        )
    if not facts.openvino:
        raise MissingDependencyError('openvino is not installed: pip install "jina-onnx[openvino]"')
    if request.precision == "bf16" and not facts.bf16_units:
        raise DeviceError("precision='bf16': this CPU has no bf16 units; use precision='fp32'")
    option = _openvino_option(request.precision, facts)
    if option is None:
        raise ArtifactError(f"{facts.name} has no fp32 variant (onnx/model.onnx) for OpenVINO to run; re-export it")
    if option.precision == "bf16":
        if facts.bf16_gate is None:
            return Plan(request.objective, None, why + "bf16 asked for: check its gate first", check_bf16=option)
        if not facts.bf16_gate:
            if request.precision == "bf16":
                raise ArtifactError(
                    f"{facts.name}: bf16 on OpenVINO misses its gate against PyTorch fp32 on "
                    f"this CPU ({facts.bf16_failure or 'recorded earlier'}); use precision='fp32'"
                )
            return Plan(
                request.objective,
                Option("openvino", "cpu", option.variant, "fp32"),
                why + "bf16 misses its gate on this CPU: OpenVINO runs fp32",
            )
    if request.precision == "auto" and facts.bf16_units and facts.bf16_gate is False:
        why += f"bf16 misses its gate on this CPU ({facts.bf16_failure or 'recorded earlier'}): OpenVINO runs fp32; "
    return Plan(
        request.objective,
        option,
        why + ("backend='openvino' asked for" if request.precision == "auto" else _single_reason(request, option)),
    )


def _openvino_option(precision: str, facts: Facts) -> Option | None:
    graph = next((v for v in OPENVINO_GRAPHS if v in facts.variants), None)
    if graph is None:
        return None
    # bf16 asked for by name stays bf16 here, so a missed gate is refused rather than run as fp32.
    wanted = precision == "bf16" or (precision == "auto" and facts.bf16_units and facts.bf16_gate is not False)
    arithmetic = "bf16" if wanted else "fp32"
    return Option("openvino", "cpu", graph, arithmetic)


def _slow_int8(option: Option, facts: Facts) -> str:
    """A line for int8 named on a CPU where it runs slower than fp32: as measured here (by an earlier
    precision="auto" load), else as expected of a CPU without int8 units."""
    if option.variant != "int8" or option.device != "cpu":
        return ""
    int8 = facts.speeds.get(option.label)
    fp32_labels = [f"onnxruntime {v} on cpu" for v in ("fp32-opt", "fp32") if v in facts.variants]
    fp32 = max((facts.speeds[label] for label in fp32_labels if label in facts.speeds), default=None)
    cpu = f" ({facts.cpu_class})" if facts.cpu_class else ""
    if int8 is not None and fp32 is not None:
        if int8 < fp32:
            return (
                f"{facts.name}: int8 measured {int8:,.0f} texts/s on this CPU{cpu}, fp32 {fp32:,.0f}: it runs "
                "what was asked, but precision='auto' would run the faster fp32"
            )
        return ""
    if not facts.int8_units:
        return (
            f"{facts.name}: this CPU{cpu} has no int8 dot-product units (VNNI, AMX, arm64 dotprod): int8 runs about "
            "half as fast as fp32 on such CPUs (docs/performance.md); precision='auto' measures both and runs "
            "the faster"
        )
    return ""


def _single_reason(request: Request, option: Option) -> str:
    if request.precision == "auto":
        return f"the only {option.device} candidate in the artifact"
    return f"precision={request.precision!r} asked for"


def _missing(precision: str, facts: Facts) -> ArtifactError:
    have = ", ".join(facts.variants) or "none"
    why = facts.rejected.get(precision)
    if why:
        hint = f"it was built at export but {why}"
    elif precision == "fp32-opt":
        hint = "re-export with: jina-onnx export SOURCE --optimize"
    else:
        hint = f"re-export with: jina-onnx export SOURCE --precision fp32,{precision}"
    return ArtifactError(f"{facts.name} has no {precision} variant (it has: {have}); {hint}")
