"""`export_model`: checkpoint -> validated ONNX artifact directory, written atomically."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import gc
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jina_onnx.atomic import process_alive
from jina_onnx.engines import checks, openvino
from jina_onnx.errors import ExportError, JinaOnnxError, ParityError
from jina_onnx.loader import open_option
from jina_onnx.loadplan import Option
from jina_onnx.machine import package_versions
from jina_onnx.manifest import (
    Manifest,
    Parity,
    Precision,
    ProbeInfo,
    Source,
    TokenizerInfo,
    Variant,
    load_manifest,
    sha256_file,
)
from jina_onnx.probe import PROBE_TEXTS, probe_parity
from jina_onnx.registry import Architecture, home_dir
from jina_onnx.tokenization import TextTokenizer

from .card import write_card
from .checkpoint import Checkpoint, load_torch_model, read_checkpoint
from .fp16 import CALIBRATION_TEXTS, calibration_feeds, to_fp16
from .hub import ResolvedSource, resolve_source
from .layout import write_hub_files
from .static_int8 import CALIBRATION_FILE, build_static_int8, calibration_batches, calibration_texts
from .tokenizer import load_hf_tokenizer, write_tokenizer
from .trace import OPSET, export_onnx, pooled_module
from .validate import torch_embeddings
from .variants import GATES, ffn_output_matmuls, optimize_for_cpu, speed_vs_fp32, to_int8, to_int8_weight_only

log = logging.getLogger("jina_onnx")

PROBE_FILE = "probe.json"
# The names transformers.js picks by dtype (fp32, fp16, q8) and sentence-transformers by file_name; the fused
# CPU graph is jina-onnx's own (its contrib ops are ONNX Runtime's) and no consumer looks for it.
FILES = {
    Precision.FP32: "onnx/model.onnx",
    Precision.FP32_OPT: "onnx/model_cpu_fused.onnx",
    Precision.FP16: "onnx/model_fp16.onnx",
    Precision.INT8: "onnx/model_quantized.onnx",
}


DEFAULT_PRECISIONS = ("fp32", "fp16", "int8")  # and fp32-opt, with optimize (export_model)


def export_model(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    name: str | None = None,
    revision: str | None = None,
    precisions: Sequence[str] | None = None,
    optimize: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    hub_cache: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Export a checkpoint to an ONNX artifact directory and return its path.

    The directory is also a Hugging Face model repository in the conventional layout (`export/layout.py`,
    docs/interop.md): sentence-transformers (`backend="onnx"`), fastembed and `build_model("org/repo")` load it as
    is, transformers.js too (a T5 encoder through examples/browser/feature-extractor.js), and `hf upload`
    publishes it with its model card.

    Every variant is run through the runtime on a fixed probe set and compared with PyTorch
    before it is kept: fp32 must match within 1e-4 or nothing is written; an optimized, fp16 or
    int8 variant under its gate is left out and the reason recorded in the manifest. The artifact
    is built in a temporary directory next to `out_dir` and renamed into place.

    Args:
        source: a name from `list_models()`, a hub id, or a local checkpoint directory.
        out_dir: the artifact directory itself; default `<cache_dir>/<name>`.
        name: the artifact's model name; default the registry name, or the source's last path part.
        revision: hub branch, tag or commit (hub sources only).
        precisions: exactly the graphs written (each where it passes its gate): any of "fp32" (the traced graph,
            runs anywhere; what other tools load by default), "fp32-opt" (ONNX Runtime's fused graph for CPU), "fp16"
            (for CUDA), "int8" (for CPU). fp32 (and fp32-opt) are always built, to gate and derive the others,
            then left out unless named. Default: fp32, fp16 and int8, plus fp32-opt with `optimize`.
        optimize: derive fp16/int8 from fp32-opt, ONNX Runtime's fused graph for CPU (and keep fp32-opt when
            `precisions` is the default).
        cache_dir: where named artifacts live; default $JINA_ONNX_HOME or ~/.cache/jina-onnx.
        hub_cache: huggingface_hub's cache directory; default its own.
        overwrite: replace an existing artifact at `out_dir`.

    Example:
        >>> from jina_onnx.export import export_model
        >>> export_model("jina-embedding-t-en-v1")  # doctest: +SKIP
        PosixPath('/home/me/.cache/jina-onnx/jina-embedding-t-en-v1')
    """
    wanted = _check_precisions(precisions if precisions is not None else DEFAULT_PRECISIONS)
    if precisions is None and optimize:
        wanted.insert(1, Precision.FP32_OPT)
    resolved = resolve_source(source, revision, hub_cache)
    checkpoint = read_checkpoint(resolved.directory)
    name = name or resolved.name
    out = Path(out_dir).expanduser() if out_dir is not None else home_dir(cache_dir) / name
    if out.exists() and not overwrite:
        raise ExportError(f"{out} already exists; pass overwrite=True to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
    try:
        manifest = _build(resolved, checkpoint, name, staging, wanted, optimize or Precision.FP32_OPT in wanted)
        manifest = _keep_only(staging, manifest, wanted)
        write_card(staging, manifest)
        _publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        _free_cycles()  # the last step's graphs, and a failed step's
    # Said once, at the end: a variant that missed its gate on one recipe and passed on the next (int8's
    # weight-only fallback) was written, and only what is finally left out earns a warning.
    written = load_manifest(out)
    for precision, reason in written.rejected.items():
        if precision != "bf16":  # bf16 is OpenVINO running the fp32 graph, not a file
            log.warning("jina-onnx: %s not written: %s", precision, reason)
    log.info("jina-onnx: wrote %s (%s)", out, ", ".join(p.value for p in written.variants))
    return out


def _check_precisions(precisions: Sequence[str]) -> list[Precision]:
    if isinstance(precisions, str):
        precisions = [p.strip() for p in precisions.split(",") if p.strip()]
    choices = (Precision.FP32, Precision.FP32_OPT, Precision.FP16, Precision.INT8)
    wanted = []
    for value in precisions:
        try:
            precision = Precision(value)
        except ValueError:
            precision = None
        if precision not in choices:
            raise ExportError(
                f"precision {value!r} is not one of {', '.join(p.value for p in choices)}; name one or more, "
                "comma-separated (e.g. --precision int8)"
            )
        if precision not in wanted:
            wanted.append(precision)
    if not wanted:
        raise ExportError("no precision named; name one or more of fp32, fp32-opt, fp16, int8 (e.g. --precision int8)")
    return wanted


def _keep_only(staging: Path, manifest: Manifest, wanted: list[Precision]) -> Manifest:
    """Delete the graphs built only to gate or derive the named ones (an int8-only export is one graph on disk)
    and their manifest entries; a named one that missed its gate stays recorded in `rejected`."""
    for precision in [p for p in manifest.variants if p not in wanted]:
        (staging / manifest.variants[precision].file).unlink(missing_ok=True)
    kept = {p: v for p, v in manifest.variants.items() if p in wanted}
    if not kept:
        raise ExportError(
            f"none of {', '.join(p.value for p in wanted)} passed its gate ({manifest.rejected}); nothing was written"
        )
    rejected = {k: v for k, v in manifest.rejected.items() if k == "bf16" or Precision(k) in wanted}
    extra = dict(manifest.extra)
    openvino_file = extra.get("openvino", {}).get("bf16", {}).get("file")
    if openvino_file is not None and not (staging / openvino_file).exists():
        del extra["openvino"]  # measured on a graph that is not kept
    manifest = dataclasses.replace(manifest, variants=kept, rejected=rejected, extra=extra)
    manifest.save(staging)
    return manifest


def _build(
    resolved: ResolvedSource, checkpoint: Checkpoint, name: str, staging: Path, wanted: list[Precision], optimize: bool
) -> Manifest:
    log.info("jina-onnx: loading %s (%s)", resolved.location, checkpoint.architecture.value)
    hf_tokenizer = load_hf_tokenizer(checkpoint.directory)
    vocab_size = write_tokenizer(hf_tokenizer, staging / "tokenizer.json", checkpoint.lowercase)
    hub_files = write_hub_files(checkpoint, hf_tokenizer, staging)
    (staging / "onnx").mkdir()
    encoder = load_torch_model(checkpoint)
    input_names = ["input_ids", "attention_mask"]
    if checkpoint.architecture is Architecture.BERT:
        input_names.append("token_type_ids")
    module = pooled_module(encoder, checkpoint.pooling, "token_type_ids" in input_names)

    log.info("jina-onnx: tracing to ONNX (opset %d)", OPSET)
    export_onnx(module, input_names, staging / FILES[Precision.FP32])
    _check_graph(staging / FILES[Precision.FP32])
    reference = torch_embeddings(
        module, hf_tokenizer, list(PROBE_TEXTS), checkpoint.max_length, checkpoint.lowercase, input_names
    )
    del module, encoder  # the l model is 1.3 GB: free it before ONNX Runtime loads its copies
    _free_cycles()
    (staging / PROBE_FILE).write_text(
        json.dumps({"reference": "torch fp32", "texts": list(PROBE_TEXTS), "embeddings": reference.tolist()})
    )

    manifest = Manifest(
        name=name,
        architecture=checkpoint.architecture,
        dim=checkpoint.dim,
        max_length=checkpoint.max_length,
        pooling=checkpoint.pooling,
        normalize=checkpoint.normalize,
        inputs=tuple(input_names),
        tokenizer=TokenizerInfo(
            "tokenizer.json", sha256_file(staging / "tokenizer.json"), int(hf_tokenizer.pad_token_id), vocab_size
        ),
        variants={},
        probe=ProbeInfo(PROBE_FILE, sha256_file(staging / PROBE_FILE)),
        source=Source(
            resolved.kind,
            resolved.location,
            resolved.revision,
            checkpoint.weights.name,
            sha256_file(checkpoint.weights),
        ),
        versions=_versions(),
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        files={name: sha256_file(staging / name) for name in hub_files},
        extra={"measured_on": _measured_on()},
    )
    check = functools.partial(_gated, staging, reference)
    manifest = check(manifest, Precision.FP32, "torch.onnx.export (TorchScript)")
    if Precision.FP32 not in manifest.variants:
        raise ParityError(f"fp32 ONNX does not reproduce PyTorch ({manifest.rejected['fp32']}); nothing was written")

    manifest = _output_ranges(staging, manifest)
    base = Precision.FP32
    if optimize:
        log.info("jina-onnx: fusing for CPU with onnxruntime.transformers")
        heads = int(checkpoint.config.get("num_attention_heads") or checkpoint.config["num_heads"])
        fused = optimize_for_cpu(
            staging / FILES[Precision.FP32],
            staging / FILES[Precision.FP32_OPT],
            checkpoint.architecture,
            heads,
            checkpoint.dim,
        )
        _free_cycles()
        manifest = check(manifest, Precision.FP32_OPT, "fp32, onnxruntime.transformers CPU fusions", fused)
        if Precision.FP32_OPT in manifest.variants:
            base = Precision.FP32_OPT
    manifest = _openvino_bf16(staging, manifest)  # on the graph OpenVINO will run: fp32-opt when it was kept
    source_file = staging / FILES[base]
    if Precision.FP16 in wanted:
        manifest = _fp16_variant(staging, manifest, check, source_file, base, checkpoint)
        _free_cycles()
    if Precision.INT8 in wanted:
        manifest = _int8_variant(staging, manifest, check, source_file, base, checkpoint)
        _free_cycles()
    return manifest


def _measured_on() -> dict[str, object]:
    """The CPU the gates (and the int8 speeds) were measured on. The graphs themselves do not depend on it
    (variants.INT8_REDUCE_RANGE): this says where the numbers come from."""
    from jina_onnx.machine import cpu_class, cpu_name

    cpu = cpu_class()
    return {"cpu": cpu_name(), "cpu_class": cpu.name, "features": list(cpu.features)}


def _free_cycles() -> None:
    """Free what the last step left in reference cycles. torch's traced module and onnxruntime.transformers'
    optimizer (its symbolic shape inference) hold whole graphs in cycles, 14 ModelProtos after fusing s, which
    only a full gc pass frees, and Python runs one rarely once torch is imported: without this, exporting b
    kept 3.4 GB it no longer used and l 13 GB, and the test process was killed for memory (tests/test_export.py,
    test_an_export_frees_its_graphs_as_it_goes)."""
    gc.collect()


def _fp16_variant(
    staging: Path,
    manifest: Manifest,
    check: functools.partial,
    source_file: Path,
    base: Precision,
    checkpoint: Checkpoint,
) -> Manifest:
    """fp16 with every MatMul in fp16 (T5: residual stream rescaled to fit); the old fp32-islands
    recipe only when the measured peaks or the gate say the rescaled graph is not good enough."""
    log.info("jina-onnx: converting to fp16")
    target = staging / FILES[Precision.FP16]
    fused_for_fp16 = None
    if checkpoint.architecture is Architecture.T5_ENCODER and base is not Precision.FP32_OPT:
        # Rescaling edits the fused norms' epsilon; fuse a private copy when the artifact has no fused graph.
        fused_for_fp16 = staging / ".fused-for-fp16.onnx"
        heads = int(checkpoint.config["num_heads"])
        optimize_for_cpu(source_file, fused_for_fp16, checkpoint.architecture, heads, checkpoint.dim)
        source_file = fused_for_fp16
    tokenizer = TextTokenizer(staging / "tokenizer.json", manifest.max_length, manifest.tokenizer.pad_id)
    feeds = calibration_feeds(tokenizer, PROBE_TEXTS + CALIBRATION_TEXTS, manifest.inputs)
    try:
        result = to_fp16(source_file, target, checkpoint.architecture, feeds)
        manifest = check(manifest, Precision.FP16, f"{base.value}, {result.description}", details=result.details())
        if Precision.FP16 in manifest.rejected and result.recipe == "rescaled":
            first_try = manifest.rejected.pop(Precision.FP16.value)
            log.info("jina-onnx: rescaled fp16 missed its gate (%s); retrying with fp32 islands", first_try)
            result = to_fp16(source_file, target, checkpoint.architecture, feeds, recipe="islands")
            manifest = check(
                manifest,
                Precision.FP16,
                f"{base.value}, {result.description}",
                details=result.details() | {"rescaled_rejected": first_try},
            )
    finally:
        if fused_for_fp16 is not None:
            fused_for_fp16.unlink(missing_ok=True)
    return manifest


# How many of the calibration texts static int8 is calibrated on (default: all). Fewer make a faster export for
# trials and the quick test set (docs/testing.md): an evenly spaced subset, named in the manifest.
CALIBRATION_ENV = "JINA_ONNX_CALIBRATION_TEXTS"


def calibration_subset(texts: list[str], wanted: str | None) -> tuple[list[str], str]:
    """`texts` or an evenly spaced `wanted` of them, with the words the manifest records.

    Example:
        >>> calibration_subset([str(i) for i in range(10)], "3")
        (['0', '3', '6'], '3 of 10 texts (evenly spaced), int8_calibration.txt')
    """
    if wanted and (not wanted.isdigit() or int(wanted) < 1):
        raise ExportError(f"{CALIBRATION_ENV}={wanted!r}: give a number of calibration texts (1 to {len(texts)})")
    if not wanted or int(wanted) >= len(texts):
        return texts, f"{len(texts)} texts, {CALIBRATION_FILE.name}"
    count = int(wanted)
    step = len(texts) / count
    chosen = [texts[int(i * step)] for i in range(count)]
    return chosen, f"{count} of {len(texts)} texts (evenly spaced), {CALIBRATION_FILE.name}"


def _int8_variant(
    staging: Path,
    manifest: Manifest,
    check: functools.partial,
    source_file: Path,
    base: Precision,
    checkpoint: Checkpoint,
) -> Manifest:
    """int8 in order of speed, the first that passes the gate (docs/performance.md, "Static int8"): static
    (SmoothQuant + calibrated scales: batch-invariant, the int8 GEMM's speed), then dynamic (per-call scales),
    then weight-only (MatMulNBits, per-row activations). The kept graph's speed against fp32 is measured here
    and recorded with the CPU class it ran on (manifest extra["measured_on"])."""
    target = staging / FILES[Precision.INT8]
    texts, calibration = calibration_subset(calibration_texts(), os.environ.get(CALIBRATION_ENV))
    log.info("jina-onnx: quantizing to int8 (static, calibrated on %d texts)", len(texts))
    static_source, built_from = source_file, base.value
    unfused = None
    if checkpoint.architecture is Architecture.BERT and base is Precision.FP32_OPT:
        unfused = staging / ".static-int8-source.onnx"
        heads = int(checkpoint.config["num_attention_heads"])
        optimize_for_cpu(
            staging / FILES[Precision.FP32], unfused, checkpoint.architecture, heads, checkpoint.dim, attention=False
        )
        static_source, built_from = unfused, "fp32-opt without the Attention fusion"
    tokenizer = TextTokenizer(staging / "tokenizer.json", manifest.max_length, manifest.tokenizer.pad_id)
    feeds = calibration_batches(tokenizer, texts, manifest.inputs)
    try:
        result = build_static_int8(
            static_source,
            target,
            feeds,
            ffn_output_matmuls(static_source),
            calibration,
        )
    finally:
        if unfused is not None:
            unfused.unlink(missing_ok=True)
    if result.chosen is not None:
        manifest = check(manifest, Precision.INT8, f"{built_from}, {result.describe()}", details=result.details())
        static_missed = manifest.rejected.pop(Precision.INT8.value, None)
    else:
        static_missed = result.missed()
    if static_missed is not None:
        log.info("jina-onnx: static int8 not kept (%s); trying dynamic int8", static_missed)
        fallback = {"static_rejected": static_missed, "static": result.details()}
        how = to_int8(source_file, target)
        manifest = check(manifest, Precision.INT8, f"{base.value}, {how}", details=fallback)
        if Precision.INT8 in manifest.rejected and "batch_invariance" not in manifest.rejected[Precision.INT8.value]:
            first_try = manifest.rejected.pop(Precision.INT8.value)
            log.info("jina-onnx: int8 missed its gate (%s); retrying with the FFN output MatMuls in fp32", first_try)
            how = to_int8(source_file, target, exclude=ffn_output_matmuls(source_file))
            manifest = check(manifest, Precision.INT8, f"{base.value}, {how}", details=fallback)
        if Precision.INT8 in manifest.rejected:
            # Dynamic int8 picks one activation scale per call: where that moves vectors with their batch (or
            # loses too much), int8 weights with per-row activation quantization do not.
            dynamic = manifest.rejected.pop(Precision.INT8.value)
            log.info("jina-onnx: dynamic int8 missed its gate (%s); trying weight-only int8", dynamic)
            how = to_int8_weight_only(source_file, target)
            manifest = check(
                manifest, Precision.INT8, f"{base.value}, {how}", details=fallback | {"dynamic_rejected": dynamic}
            )
    if Precision.INT8 in manifest.variants:
        variant = manifest.variants[Precision.INT8]
        speed = speed_vs_fp32(source_file, target, manifest.inputs)
        log.info("jina-onnx: int8 runs %.2fx fp32 here (%s)", speed["int8_vs_fp32"], speed["shape"])
        variant = dataclasses.replace(variant, details={**variant.details, "speed": speed})
        manifest = dataclasses.replace(manifest, variants={**manifest.variants, Precision.INT8: variant})
        manifest.save(staging)
    return manifest


def _output_ranges(staging: Path, manifest: Manifest) -> Manifest:
    """Calibrate int8 / uint8 output (jina_onnx.quantize): each dimension's range over the fp32 vectors of the
    calibration texts (STS-dev pairs 0-299, shipped as calibration.txt), raw and L2-normalized."""
    from jina_onnx.quantize import calibration_ranges
    from jina_onnx.similarity import l2_normalize

    texts = (Path(__file__).with_name("calibration.txt")).read_text(encoding="utf-8").splitlines()
    model = open_option(staging, manifest, Option("onnxruntime", "cpu", "fp32", "fp32"), None)
    raw = model.encode(texts, normalize=False)
    ranges = {
        "raw": calibration_ranges(raw),
        "normalized": calibration_ranges(l2_normalize(raw)),
        "calibration": f"{len(texts)} sentences of STS-dev pairs 0-299, fp32",
    }
    manifest = dataclasses.replace(manifest, output_ranges=ranges)
    manifest.save(staging)
    return manifest


def _openvino_bf16(staging: Path, manifest: Manifest) -> Manifest:
    """Where OpenVINO is installed and the CPU has bf16 units, run bf16's gate now and record it in the
    manifest (`extra["openvino"]["bf16"]`), so loading with backend="openvino" here needs no probe run.
    Another CPU or OpenVINO version checks again at first load (engines/checks.py)."""
    if not openvino.installed() or not openvino.cpu_has_bf16():
        return manifest
    variant = checks.openvino_variant(manifest)
    try:
        model = open_option(staging, manifest, Option("openvino", "cpu", variant.precision.value, "bf16"), None)
        # probe_parity (inside bf16_check) silences the probe's deliberate truncation warnings.
        result = checks.bf16_check(staging, manifest, lambda texts: model.encode(texts, normalize=False)) | {
            "key": checks.bf16_key(variant),
            "file": variant.file,
        }
    except (JinaOnnxError, RuntimeError) as e:  # OpenVINO is optional: the ONNX Runtime artifact stands alone
        log.warning("jina-onnx: OpenVINO could not check bf16 (%s); the runtime will check at first load", e)
        return manifest
    log.info(
        "jina-onnx: OpenVINO bf16 on this CPU: min cosine %.6f (%s)",
        result["parity"]["min_cosine"],
        "passes" if result["passed"] else f"misses {result['gate']}: the runtime will use fp32 there",
    )
    manifest = dataclasses.replace(manifest, extra={**manifest.extra, "openvino": {"bf16": result}})
    manifest.save(staging)
    return manifest


def _gated(
    staging: Path,
    reference: np.ndarray,
    manifest: Manifest,
    precision: Precision,
    built_from: str,
    fused_ops: dict[str, int] | None = None,
    details: dict | None = None,
) -> Manifest:
    """Run one variant through the runtime, compare with PyTorch, keep it only if it passes its gate."""
    path = staging / FILES[precision]
    gate = GATES[precision]
    unchecked = Parity(float("nan"), float("nan"), float("nan"), 0, "not yet validated")
    variant = Variant(
        precision,
        FILES[precision],
        sha256_file(path),
        OPSET,
        unchecked,
        gate.describe(),
        built_from,
        dict(fused_ops or {}),
        dict(details or {}),
    )
    trial = dataclasses.replace(manifest, variants={**manifest.variants, precision: variant})
    trial.save(staging)  # the runtime reads only what a manifest lists
    runtime = open_option(staging, trial, Option("onnxruntime", "cpu", precision.value, precision.value), None)
    measured = probe_parity(
        lambda texts: runtime.encode(texts, normalize=False), list(PROBE_TEXTS), reference, "torch fp32"
    )
    missed = gate.failures(measured)
    if missed:
        reason = f"{precision.value} missed its gate ({gate.describe()}): {'; '.join(missed)}"
        log.info("jina-onnx: %s", reason)
        path.unlink()
        manifest = dataclasses.replace(manifest, rejected={**manifest.rejected, precision.value: reason})
    else:
        log.info(
            "jina-onnx: %s max abs diff %.2e, mean cosine %.6f, min cosine %.6f, batch invariance %.6f",
            precision.value,
            measured.max_abs_diff,
            measured.mean_cosine,
            measured.min_cosine,
            measured.batch_invariance,
        )
        manifest = dataclasses.replace(
            manifest, variants={**manifest.variants, precision: dataclasses.replace(variant, parity=measured)}
        )
    manifest.save(staging)
    return manifest


def _remove_abandoned_staging(out: Path) -> None:
    """Delete staging directories that killed exports left behind (their process is gone)."""
    for leftover in out.parent.glob(f".{out.name}.partial-*-*"):
        pid = leftover.name[len(f".{out.name}.partial-") :].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _check_graph(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the traced graph is not valid ONNX ({e})") from e


def _publish(staging: Path, out: Path) -> None:
    """Move the finished artifact into place; an existing one is replaced only after the move succeeds."""
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the artifact should read like any directory
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
    return package_versions(
        ("jina-onnx", "torch", "transformers", "onnx", "onnxruntime", "onnxruntime-gpu", "tokenizers")
    )
