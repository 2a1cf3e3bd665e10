"""`export_model`: checkpoint -> validated ONNX artifact directory, written atomically."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import shutil
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

from jina_onnx.errors import ExportError, ParityError
from jina_onnx.manifest import Manifest, Precision, Source, TokenizerInfo, Variant, Parity, sha256_file
from jina_onnx.model import EmbeddingModel, TruncationWarning
from jina_onnx.registry import Architecture, home_dir

from .checkpoint import Checkpoint, load_torch_model, read_checkpoint
from .hub import ResolvedSource, resolve_source
from .tokenizer import load_hf_tokenizer, write_tokenizer
from .trace import OPSET, export_onnx, pooled_module
from .validate import PROBE_TEXTS, parity, torch_embeddings

log = logging.getLogger("jina_onnx")

FP32_TOLERANCE = 1e-4  # max abs diff of pooled embeddings, ONNX vs PyTorch


def export_model(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    name: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    hub_cache: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Export a checkpoint to an ONNX artifact directory and return its path.

    Nothing is written unless the ONNX graph reproduces PyTorch within 1e-4 on the probe set;
    the artifact is built in a temporary directory next to `out_dir` and renamed into place.

    Args:
        source: a name from `list_models()`, a hub id, or a local checkpoint directory.
        out_dir: the artifact directory itself; default `<cache_dir>/<name>`.
        name: the artifact's model name; default the registry name, or the source's last path part.
        revision: hub branch, tag or commit (hub sources only).
        cache_dir: where named artifacts live; default $JINA_ONNX_HOME or ~/.cache/jina-onnx.
        hub_cache: huggingface_hub's cache directory; default its own.
        overwrite: replace an existing artifact at `out_dir`.

    Example:
        >>> from jina_onnx.export import export_model
        >>> export_model("jina-embedding-t-en-v1")  # doctest: +SKIP
        PosixPath('/home/me/.cache/jina-onnx/jina-embedding-t-en-v1')
    """
    resolved = resolve_source(source, revision, hub_cache)
    checkpoint = read_checkpoint(resolved.directory)
    name = name or resolved.name
    out = Path(out_dir).expanduser() if out_dir is not None else home_dir(cache_dir) / name
    if out.exists() and not overwrite:
        raise ExportError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        _build(resolved, checkpoint, name, staging)
        _publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("jina-onnx: wrote %s", out)
    return out


def _build(resolved: ResolvedSource, checkpoint: Checkpoint, name: str, staging: Path) -> Manifest:
    log.info("jina-onnx: loading %s (%s)", resolved.location, checkpoint.architecture.value)
    hf_tokenizer = load_hf_tokenizer(checkpoint.directory)
    vocab_size = write_tokenizer(hf_tokenizer, staging / "tokenizer.json", checkpoint.lowercase)
    encoder = load_torch_model(checkpoint)
    input_names = ["input_ids", "attention_mask"]
    if checkpoint.architecture is Architecture.BERT:
        input_names.append("token_type_ids")
    module = pooled_module(encoder, checkpoint.pooling, "token_type_ids" in input_names)

    log.info("jina-onnx: tracing to ONNX (opset %d)", OPSET)
    export_onnx(module, input_names, staging / "model.onnx")
    _check_graph(staging / "model.onnx")

    unchecked = Parity(float("nan"), float("nan"), float("nan"), 0, "not yet validated")
    manifest = Manifest(
        name=name,
        architecture=checkpoint.architecture,
        dim=checkpoint.dim,
        max_length=checkpoint.max_length,
        pooling=checkpoint.pooling,
        normalize=checkpoint.normalize,
        inputs=tuple(input_names),
        tokenizer=TokenizerInfo("tokenizer.json", sha256_file(staging / "tokenizer.json"),
                                int(hf_tokenizer.pad_token_id), vocab_size),
        variants={Precision.FP32: Variant(Precision.FP32, "model.onnx", sha256_file(staging / "model.onnx"),
                                          OPSET, unchecked)},
        source=Source(resolved.kind, resolved.location, resolved.revision, checkpoint.weights.name,
                      sha256_file(checkpoint.weights)),
        versions=_versions(),
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    manifest.save(staging)

    log.info("jina-onnx: checking ONNX against PyTorch on %d probe texts", len(PROBE_TEXTS))
    reference = torch_embeddings(module, hf_tokenizer, list(PROBE_TEXTS), checkpoint.max_length,
                                 checkpoint.lowercase, input_names)
    runtime = EmbeddingModel(staging, manifest, manifest.variants[Precision.FP32], "cpu", threads=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)  # the over-long probe is cut on purpose
        candidate = runtime.encode(list(PROBE_TEXTS), normalize=False)
    measured = parity(reference, candidate, "torch fp32")
    if not measured.max_abs_diff <= FP32_TOLERANCE:  # `not <=` also catches NaN
        raise ParityError(
            f"fp32 ONNX differs from PyTorch by {measured.max_abs_diff:.3g} (> {FP32_TOLERANCE:g}; "
            f"min cosine {measured.min_cosine:.6f}); nothing was written"
        )
    log.info("jina-onnx: fp32 max abs diff %.2e, min cosine %.7f", measured.max_abs_diff, measured.min_cosine)
    fp32 = dataclasses.replace(manifest.variants[Precision.FP32], parity=measured)
    manifest = dataclasses.replace(manifest, variants={Precision.FP32: fp32})
    manifest.save(staging)
    return manifest


def _check_graph(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the traced graph is not valid ONNX ({e})") from e


def _publish(staging: Path, out: Path) -> None:
    """Move the finished artifact into place; an existing one is replaced only after the move succeeds."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    try:
        staging.rename(out)
    except OSError:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("jina-onnx", "torch", "transformers", "onnx", "onnxruntime", "onnxruntime-gpu", "tokenizers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions
