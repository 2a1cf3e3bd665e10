"""Building ONNX Runtime sessions: which provider, which options."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from .errors import ArtifactError, DeviceError, InputError, require

log = logging.getLogger("jina_onnx")

DEVICES = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def select_device(device: str, available: Sequence[str]) -> str:
    """Resolve "auto" / "cpu" / "cuda" against the providers this onnxruntime build offers.

    Example:
        >>> select_device("auto", ["CPUExecutionProvider"])
        'cpu'
    """
    if device not in DEVICES:
        raise InputError(f"device={device!r} is not one of {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    if CUDA in available:
        return "cuda"
    if device == "cuda":
        raise DeviceError(
            f"device='cuda' but this onnxruntime offers only {', '.join(available) or 'no providers'}; "
            'install the CUDA build with pip install "jina-onnx[gpu]" (and uninstall onnxruntime), '
            "or use device='cpu'"
        )
    return "cpu"


def providers_for(device: str) -> list[str]:
    """The provider list to hand to InferenceSession; CPU stays as a fallback for unsupported ops."""
    return [CUDA, CPU] if device == "cuda" else [CPU]


def create_session(path: Path, device: str, threads: int | None) -> Any:
    """An InferenceSession for `path` on a resolved device ("cpu" or "cuda")."""
    ort = require("onnxruntime", "cpu")
    options = ort.SessionOptions()  # type: ignore[attr-defined]
    if threads is not None:
        if threads < 1:
            raise InputError(f"threads={threads} must be a positive integer (or None for the default)")
        options.intra_op_num_threads = threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # type: ignore[attr-defined]
    options.log_severity_level = 3  # ORT's warnings about unused initializers are noise to users
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers_for(device))  # type: ignore[attr-defined]
    except Exception as e:  # ORT raises its own Fail / InvalidProtobuf / RuntimeException types
        raise ArtifactError(f"{path}: ONNX Runtime cannot load it ({e}); re-export the model") from e
    if device == "cuda" and CUDA not in session.get_providers():
        # ORT silently falls back to CPU when the CUDA libraries are missing: never let that pass.
        raise DeviceError(
            f"{path}: CUDAExecutionProvider could not be created (CUDA or cuDNN libraries missing?); "
            "check `python -c 'import onnxruntime; onnxruntime.preload_dlls()'` or use device='cpu'"
        )
    return session
