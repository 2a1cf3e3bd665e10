"""`build_model`: open an artifact (`artifact`), let the load plan decide what runs (`loadplan`, `loader`), and
hand back the `EmbeddingModel`. The top of the load path: it imports the layers below and none imports it."""

from __future__ import annotations

import os

from .artifact import read_manifest, resolve_artifact
from .errors import InputError
from .loader import load
from .loadplan import Request
from .loadplan import check as loadplan_check
from .model import EmbeddingModel
from .registry import home_dir


def build_model(
    name_or_path: str | os.PathLike[str],
    *,
    device: str = "auto",
    precision: str = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    device_id: int = 0,
    warmup: bool | None = None,
    pipeline: bool | None = None,
    allow_spinning: bool = True,
    backend: str = "auto",
    host_workers: int | None = None,
    optimize_for: str = "throughput",
    revision: str | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> EmbeddingModel:
    """Load an exported model: what runs is decided by `jina_onnx.loadplan` and logged once with its reason.

    Args:
        name_or_path: a model name (looked up in `cache_dir`), an artifact directory, or a Hugging Face Hub id
            ("org/repo", or "org/repo@revision") of an export: its small files are fetched, then only the graph
            files the plan runs (`jina_onnx.hub`), into the Hub's cache; `HF_HUB_OFFLINE=1` loads from it.
        device: "cpu", "cuda", or "auto" (CUDA when this onnxruntime offers it, else CPU).
        precision: which ONNX variant to run; "auto" runs the fastest gated one for the device, measured once
            on this machine for `optimize_for` and cached (never one slower than the faster fp32 graph). "bf16" runs
            the fp32 graph on OpenVINO with bf16 arithmetic, on CPUs with bf16 units, once it passed its gate.
        cache_dir: where named artifacts live; default $JINA_ONNX_HOME or ~/.cache/jina-onnx.
        threads: ONNX Runtime intra-op threads on CPU; None uses the physical cores.
        device_id: which GPU, with device="cuda" (or "auto" finding CUDA).
        warmup: run the common input shapes once before returning; None means yes on CUDA.
        pipeline: prepare the next batches on worker threads while the device runs; None means yes on
            CUDA (where the host was the bottleneck) and `PIPELINE_ON_CPU` on CPU.
        host_workers: how many worker threads tokenize, pad and copy for the device (each with its own
            tokenizer); None: with the pipeline on, the cores the engine leaves free (on CUDA all but
            one), at least 1; 0 does the host work in the calling thread (as pipeline=False).
        allow_spinning: let idle ONNX Runtime threads busy-wait between calls (fastest for batch work);
            False when other work shares the cores, as in `jina-onnx serve`.
        backend: "onnxruntime", "openvino" (CPU only: the `openvino` extra) or "auto": ONNX Runtime unless
            OpenVINO is installed and measured faster for this model on this CPU ($JINA_ONNX_BACKEND
            overrides "auto"; see `jina_onnx.loadplan`).
        optimize_for: what "auto" choices are measured on: "throughput" (batches of 32 texts) or "latency"
            (one short text per call, as a server answering single queries sees them).
        revision, token, local_files_only: for a Hub id: the branch, tag or commit (default main); the access
            token (default $HF_TOKEN or the stored login); only the local cache, as `HF_HUB_OFFLINE=1`.

    Example:
        >>> from jina_onnx import build_model, encode, cos_sim
        >>> model = build_model("jina-embedding-t-en-v1")
        >>> a, b = encode(model=model, data=["how is the weather today", "What is the current weather like today?"])
        >>> -1.0 <= cos_sim(a, b) <= 1.0
        True
    """
    if not isinstance(device_id, int) or isinstance(device_id, bool) or device_id < 0:
        raise InputError(f"device_id={device_id!r} must be a non-negative integer")
    request = Request(device=device, precision=precision, backend=backend, objective=optimize_for)
    loadplan_check(request)
    directory = resolve_artifact(
        name_or_path, cache_dir, revision=revision, token=token, local_files_only=local_files_only
    )
    manifest = read_manifest(directory)
    model = load(
        directory,
        manifest,
        request,
        threads=threads,
        cache_dir=home_dir(cache_dir),
        device_id=device_id,
        pipeline=pipeline,
        allow_spinning=allow_spinning,
        host_workers=host_workers,
    )
    if warmup if warmup is not None else model.device == "cuda":
        model.warmup()
    return model
