"""Building ONNX Runtime sessions: which provider, which options."""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from typing import Any

from ..errors import ArtifactError, DeviceError, require
from ..machine import physical_cores

log = logging.getLogger("jina_onnx")

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

# Shared libraries the CUDA provider needs (CUDA 12 or 13 builds); named in the error when absent.
CUDA_LIBRARIES = (
    ("libcudart.so.13", "libcudart.so.12"),
    ("libcublas.so.13", "libcublas.so.12"),
    ("libcublasLt.so.13", "libcublasLt.so.12"),
    ("libcudnn.so.9",),
    ("libcufft.so.12", "libcufft.so.11"),
)


def missing_cuda_libraries() -> list[str]:
    """The CUDA libraries that cannot be loaded here (one name per library family)."""
    missing = []
    for candidates in CUDA_LIBRARIES:
        for name in candidates:
            try:
                ctypes.CDLL(name)
                break
            except OSError:
                continue
        else:
            missing.append(candidates[0])
    return missing


def session_options(threads: int | None, allow_spinning: bool = True) -> Any:
    ort = require("onnxruntime", "cpu")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Memory patterns are planned per input shape and kept: with free-length text that is a slow
    # leak (onnxruntime issues 11118, 9313). The arena alone reuses its blocks across shapes.
    options.enable_mem_pattern = False
    options.log_severity_level = 3  # ORT's warnings about unused initializers are noise to users
    if not allow_spinning:
        # Idle intra-op threads otherwise busy-wait, taking cores from other work in the process (a server's
        # event loop): at concurrency 1 it doubled jina-onnx serve's p99 on 2 cores (6.4 vs 3.1 ms).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def create_session(
    path: Path,
    device: str,
    threads: int | None,
    device_id: int = 0,
    precision: str = "fp32",
    allow_spinning: bool = True,
) -> Any:
    """An InferenceSession for `path` on a resolved device ("cpu" or "cuda")."""
    ort = require("onnxruntime", "cpu")
    options = session_options(threads, allow_spinning)
    providers: list[Any] = [CPU]
    if device == "cuda":
        if hasattr(ort, "preload_dlls"):
            # Loads CUDA/cuDNN from the nvidia-* pip packages when present: the torch-free way.
            try:
                ort.preload_dlls()
            except Exception as e:  # preload is best effort; the check below names what is missing
                log.debug("onnxruntime.preload_dlls failed: %s", e)
        # fp32 on CUDA defaults to TF32 matmuls (~2e-3 off torch fp32): keep fp32 exact.
        cuda_options = {"device_id": str(device_id), "use_tf32": "0" if precision.startswith("fp32") else "1"}
        providers = [(CUDA, cuda_options), CPU]
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as e:  # ORT raises its own Fail / InvalidProtobuf / RuntimeException types
        raise ArtifactError(f"{path}: ONNX Runtime cannot load it ({e}); re-export the model") from e
    if device == "cuda" and CUDA not in session.get_providers():
        # ORT silently falls back to CPU when the CUDA libraries are missing: never let that pass.
        missing = missing_cuda_libraries()
        what = f"missing libraries: {', '.join(missing)}" if missing else "see ONNX Runtime's log"
        raise DeviceError(
            f"{path}: CUDAExecutionProvider could not be created ({what}); install CUDA and cuDNN "
            "(e.g. pip install nvidia-cudnn-cu12 nvidia-cublas-cu12) or use device='cpu'"
        )
    return session
