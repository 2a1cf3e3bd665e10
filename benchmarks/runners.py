"""The runtimes the suite compares, each behind one `encode(texts, batch_size)` call.

A runner is named by a `RunnerSpec` (plain data, so a cold-start subprocess can rebuild it from JSON):
- jina-onnx: this package, on the exported artifact, one precision;
- torch: PyTorch through sentence-transformers, the way the models are used today (fp32; fp16 on CUDA);
- st-onnx: sentence-transformers' own ONNX backend (optimum export) and its dynamic-int8 export;
- fastembed: fastembed running our export's onnx/model.onnx (the directory as it is).
`prepare` does the one-off work (exports) in the parent; `load` builds the runner and is what cold start
times. This module imports only the standard library and numpy at import time, so importing it in a
subprocess does not skew another runtime's import time.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import WORK, prepared_artifact, prepared_minilm

RUNTIMES = ("torch", "st-onnx", "st-openvino", "fastembed", "jina-onnx")
LIBRARY = {
    "jina-onnx": "jina_onnx",
    "torch": "sentence_transformers",
    "st-onnx": "sentence_transformers",
    "st-openvino": "sentence_transformers",
    "fastembed": "fastembed",
}

Encode = Callable[[list[str], int, int | None], np.ndarray]


@dataclass(frozen=True)
class RunnerSpec:
    runtime: str  # one of RUNTIMES
    precision: str  # fp32, fp16, int8, fp32-opt; bf16 (jina-onnx on OpenVINO); default (OpenVINO's own choice)
    model: str  # t, s, b, l or minilm
    device: str  # cpu or cuda
    threads: int

    @property
    def label(self) -> str:
        names = {
            "torch": "torch",
            "st-onnx": "ST ONNX",
            "st-openvino": "ST OpenVINO",
            "fastembed": "fastembed",
            "jina-onnx": "jina-onnx",
        }
        return f"{names[self.runtime]} {self.precision}"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunnerSpec:
        return cls(**json.loads(text))


class Unsupported(Exception):
    """The runtime cannot run this model at all; the suite records the reason instead of a number."""

    def __init__(self, reason: str, cached: Path | None = None) -> None:
        super().__init__(reason)
        self.cached = cached


def checkpoint_dir(model: str) -> Path:
    """The PyTorch checkpoint in hub layout: seeded exact-config weights, or the real MiniLM."""
    if model == "minilm":
        from jina_onnx.export.synthetic import minilm_checkpoint

        return minilm_checkpoint()
    from jina_onnx.export.synthetic import write_checkpoint

    directory = WORK / "checkpoints" / model
    if not (directory / "config.json").is_file():
        write_checkpoint(model, directory)
    return directory


def artifact_dir(model: str) -> Path:
    return prepared_minilm() if model == "minilm" else prepared_artifact(model)


def int8_config_name() -> str:
    """sentence-transformers' quantization preset for this CPU (the one its docs tell users to pick)."""
    try:
        flags = next(
            (line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), ""
        ).split()
    except OSError:
        flags = []
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2" if "avx2" in flags else "arm64"


# Set by `python -m benchmarks run --retry-unsupported`: try again baselines cached as unsupported.
RETRY_UNSUPPORTED = False
BASELINE_PACKAGES = (
    "sentence-transformers",
    "optimum",
    "optimum-onnx",
    "transformers",
    "onnxruntime",
    "onnxruntime-gpu",
    "torch",
    "onnx",
)


def baseline_versions() -> dict[str, str]:
    """The versions an "unsupported" verdict holds for: after an upgrade the suite tries again."""
    from jina_onnx.machine import package_versions

    return package_versions(BASELINE_PACKAGES)


def st_onnx_dir(model: str) -> Path:
    return WORK / "st-onnx" / model


def st_onnx_file(precision: str) -> str:
    return "onnx/model.onnx" if precision == "fp32" else f"onnx/model_qint8_{int8_config_name()}.onnx"


def prepare(spec: RunnerSpec) -> None:
    """Everything `load` needs on disk: our artifact, or sentence-transformers' ONNX export of the checkpoint.

    Raises Unsupported when sentence-transformers' ONNX backend cannot export or run the model. The outcome is
    cached in WORK/st-onnx/<model>/UNSUPPORTED.json with the package versions; other versions or
    --retry-unsupported try again.
    """
    if spec.runtime in ("jina-onnx", "fastembed"):
        artifact_dir(spec.model)
        return
    checkpoint = checkpoint_dir(spec.model)
    if spec.runtime == "torch":
        return
    if spec.runtime == "st-openvino":
        _check_st_openvino()
        return
    directory = st_onnx_dir(spec.model)
    failure = directory / "UNSUPPORTED.json"
    if failure.is_file():  # an earlier run's attempt; the log says where, the table shows only the reason
        recorded = json.loads(failure.read_text())
        if recorded.get("versions") == baseline_versions() and not RETRY_UNSUPPORTED:
            raise Unsupported(recorded["reason"], cached=failure)
        failure.unlink()  # other package versions (or --retry-unsupported): the verdict may have changed
    (directory / "UNSUPPORTED.txt").unlink(missing_ok=True)  # the unversioned format of earlier suites
    if (directory / st_onnx_file(spec.precision)).is_file():
        return
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    if not (directory / "config.json").is_file():
        shutil.rmtree(directory, ignore_errors=True)
        shutil.copytree(checkpoint, directory)
    try:
        exported = not (directory / "onnx" / "model.onnx").is_file()
        model = SentenceTransformer(str(directory), device="cpu", backend="onnx")
        model.encode(["a probe sentence"])  # an export that cannot run is as unsupported as one that fails
        if exported:  # keep the export, as sentence-transformers recommends; saving a loaded one copies onto itself
            model.save_pretrained(str(directory))
        if spec.precision == "int8":
            export_dynamic_quantized_onnx_model(model, int8_config_name(), str(directory))
    except Exception as error:  # any failure of the third-party export is the finding, recorded as is
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        failure.write_text(json.dumps({"reason": reason, "versions": baseline_versions()}, indent=2) + "\n")
        raise Unsupported(reason) from error


def load(spec: RunnerSpec) -> Encode:
    """Build the runner; the returned function embeds texts as float32 (n, dim), not normalized."""
    if spec.runtime == "jina-onnx":
        return _load_jina_onnx(spec)
    if spec.runtime == "torch":
        return _load_torch(spec)
    if spec.runtime == "st-onnx":
        return _load_st_onnx(spec)
    if spec.runtime == "fastembed":
        return _load_fastembed(spec)
    if spec.runtime == "st-openvino":
        return _load_st_openvino(spec)
    raise ValueError(f"unknown runtime {spec.runtime!r}; expected one of {RUNTIMES}")


def _load_jina_onnx(spec: RunnerSpec) -> Encode:
    from jina_onnx import build_model

    # bf16 is model.onnx on OpenVINO; every other precision is pinned to ONNX Runtime so a label means one engine.
    model = build_model(
        artifact_dir(spec.model),
        device=spec.device,
        precision=spec.precision,
        threads=spec.threads if spec.device == "cpu" else None,
        backend="openvino" if spec.precision == "bf16" else "onnxruntime",
    )

    def encode(texts: list[str], batch_size: int, token_budget: int | None = None) -> np.ndarray:
        # The default budget (8192 tokens) would cut 128 x 128 into two calls; a batch-size sweep lifts it.
        budget = max(model.default_token_budget, token_budget or 0)
        return model.encode(texts, batch_size=batch_size, token_budget=budget)

    def raw(texts: list[str], batch_size: int, token_budget: int | None = None) -> Callable[[], None]:
        """The ceiling: the same graph on the same batches, tokenized, padded (and on CUDA copied to the
        device) beforehand, so timing the returned call measures the session alone."""
        budget = max(model.default_token_budget, token_budget or 0)
        batches = model.prepare_batches(texts, batch_size=batch_size, token_budget=budget)

        def run() -> None:
            for batch in batches:
                model.run_batch(batch)

        return run

    encode.raw = raw  # type: ignore[attr-defined]
    return encode


def _sentence_transformers_encode(model) -> Encode:  # type: ignore[no-untyped-def]
    """`Encode` over a SentenceTransformer, whichever backend it runs (torch, ONNX, OpenVINO)."""

    def encode(texts: list[str], batch_size: int, token_budget: int | None = None) -> np.ndarray:
        return np.asarray(model.encode(texts, batch_size=batch_size), dtype=np.float32)

    return encode


def _load_torch(spec: RunnerSpec) -> Encode:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(spec.threads)
    model = SentenceTransformer(str(checkpoint_dir(spec.model)), device=spec.device)
    if spec.precision == "fp16":
        model.half()

    return _sentence_transformers_encode(model)


def _load_st_onnx(spec: RunnerSpec) -> Encode:
    import onnxruntime
    from sentence_transformers import SentenceTransformer

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = spec.threads
    provider = "CUDAExecutionProvider" if spec.device == "cuda" else "CPUExecutionProvider"
    model = SentenceTransformer(
        str(st_onnx_dir(spec.model)),
        device=spec.device,
        backend="onnx",
        model_kwargs={"file_name": st_onnx_file(spec.precision), "provider": provider, "session_options": options},
    )

    return _sentence_transformers_encode(model)


# Why sentence-transformers' OpenVINO backend is not in our lock: measured with pip's resolver on 2026-11-27.
ST_OPENVINO_BLOCKED = (
    "sentence-transformers' OpenVINO backend needs optimum-intel (2.2.0), which requires "
    "optimum 2.3.0 and resolves torch to 2.14.1 with CUDA wheels; this suite pins optimum 2.1.0 "
    "and the CPU torch 2.13.0"
)


def _check_st_openvino() -> None:
    import importlib.util

    if importlib.util.find_spec("optimum.intel") is None:
        raise Unsupported(ST_OPENVINO_BLOCKED)


def _load_st_openvino(spec: RunnerSpec) -> Encode:
    from sentence_transformers import SentenceTransformer

    # OpenVINO's default precision: bf16 on CPUs with bf16 units, as a user of backend="openvino" gets it.
    model = SentenceTransformer(
        str(checkpoint_dir(spec.model)),
        device="cpu",
        backend="openvino",
        model_kwargs={"ov_config": {"INFERENCE_NUM_THREADS": spec.threads}},
    )

    return _sentence_transformers_encode(model)


def _load_fastembed(spec: RunnerSpec) -> Encode:
    model = fastembed_model(artifact_dir(spec.model), spec.threads, spec.device)

    def encode(texts: list[str], batch_size: int, token_budget: int | None = None) -> np.ndarray:
        return np.stack(list(model.embed(texts, batch_size=batch_size))).astype(np.float32)

    return encode


def fastembed_model(artifact: Path, threads: int, device: str = "cpu"):  # type: ignore[no-untyped-def]
    """fastembed loading our export directory as it is (its documented custom-model API), pooled output as is."""
    from jina_onnx.manifest import Precision, load_manifest

    manifest = load_manifest(artifact)
    return fastembed_on_file(artifact, manifest.variants[Precision.FP32].file, manifest.dim, threads, device)


def fastembed_on_file(directory: Path, model_file: str, dim: int, threads: int, device: str = "cpu"):
    """fastembed on one graph file of a directory, given what the manifest says (so no jina_onnx import here:
    the memory benchmark's child process measures fastembed alone)."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    name = f"jina-onnx-bench/{directory.name}"
    if name not in [m["model"] for m in TextEmbedding.list_supported_models()]:
        TextEmbedding.add_custom_model(
            model=name,
            pooling=PoolingType.DISABLED,
            normalization=False,
            sources=ModelSource(hf=name),
            dim=dim,
            model_file=model_file,
            output_name="sentence_embedding",
        )
    providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    return TextEmbedding(name, specific_model_path=str(directory), threads=threads, providers=providers)


def st_onnx_on_file(directory: Path, file_name: str, threads: int, device: str = "cpu"):
    """sentence-transformers' ONNX backend on one graph file of our export directory (the interop table's way
    in), instead of the graph its own optimum export would make."""
    import onnxruntime
    from sentence_transformers import SentenceTransformer

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    return SentenceTransformer(
        str(directory),
        device=device,
        backend="onnx",
        model_kwargs={"file_name": file_name, "provider": provider, "session_options": options},
    )
