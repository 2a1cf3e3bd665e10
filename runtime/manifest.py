"""The artifact manifest: the one schema shared by the export stage and the runtime.

An artifact is a directory holding `manifest.json`, the tokenizer and one ONNX file per
precision; since schema 2 it is also a Hugging Face model repository (the graphs under `onnx/`, the
checkpoint's config, the tokenizer and sentence-transformers files; docs/interop.md), and `files` records the
sha256 of those other files. The runtime trusts only what the manifest says, and checks every file it reads
against the sha256 recorded at export before using it; `jina-onnx verify` checks them all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import ArtifactError
from .registry import Architecture

MANIFEST_FILE = "manifest.json"
# 2: the Hugging Face layout (graphs under onnx/, token-level output first) and `files`. Schema 1 artifacts
# (graphs at the top, no `files`) still load: the manifest names every file the runtime reads.
SCHEMA_VERSION = 2


class Pooling(str, Enum):
    """How token embeddings become one sentence embedding (sentence-transformers modes)."""

    MEAN = "mean"
    CLS = "cls"
    MAX = "max"


class Precision(str, Enum):
    """The ONNX variants an artifact may hold; the value is also what `build_model(precision=...)` takes."""

    FP32 = "fp32"  # the plain traced graph: the reference, runs anywhere
    FP32_OPT = "fp32-opt"  # ONNX Runtime transformer fusions that have CPU kernels
    FP16 = "fp16"  # for CUDA; fp32 at the graph boundary, overflow-prone ops kept in fp32
    INT8 = "int8"  # for CPU; dynamically quantized MatMul weights


# The device each variant is built for ("any": both).
VARIANT_DEVICE = {Precision.FP32: "any", Precision.FP32_OPT: "cpu", Precision.FP16: "cuda", Precision.INT8: "cpu"}


@dataclass(frozen=True)
class Parity:
    """How closely a variant reproduced PyTorch on the export probe set."""

    max_abs_diff: float  # over every element of every pooled embedding
    mean_cosine: float
    min_cosine: float
    probe_count: int  # number of probe texts
    reference: str  # what the variant was compared against, e.g. "torch fp32"
    # Min cosine between a probe text embedded alone and inside a batch of mixed neighbours (probe.batch_invariance);
    # None in artifacts from before it was measured.
    batch_invariance: float | None = None


@dataclass(frozen=True)
class Variant:
    """One ONNX file of the artifact, and the accuracy gate it passed at export."""

    precision: Precision
    file: str  # relative to the artifact directory
    sha256: str
    opset: int
    parity: Parity
    gate: str = ""  # the condition parity had to meet, e.g. "mean_cosine >= 0.99"
    built_from: str = ""  # the variant this one was derived from, with the settings used
    fused_ops: dict[str, int] = field(default_factory=dict)  # ONNX Runtime fusions present in the graph
    details: dict[str, Any] = field(default_factory=dict)  # recipe settings, e.g. fp16's residual scale alpha


@dataclass(frozen=True)
class TokenizerInfo:
    """The Rust tokenizer file and the padding it needs."""

    file: str
    sha256: str
    pad_id: int
    vocab_size: int


@dataclass(frozen=True)
class ProbeInfo:
    """The probe texts and PyTorch's embeddings of them, kept so `jina-onnx verify` can recheck every variant."""

    file: str
    sha256: str


@dataclass(frozen=True)
class Source:
    """Where the weights came from."""

    kind: str  # "hub" or "local"
    location: str  # hub id, or the local directory as given
    revision: str | None  # hub commit hash; None for a local directory
    weights_file: str  # file name of the weights inside the checkpoint
    weights_sha256: str


@dataclass(frozen=True)
class Manifest:
    """Everything the runtime needs to know about an exported model."""

    name: str
    architecture: Architecture
    dim: int
    max_length: int  # tokens; longer input is truncated
    pooling: Pooling
    normalize: bool  # the checkpoint ends in a Normalize module: L2-normalize by default
    inputs: tuple[str, ...]  # graph input names, in order
    tokenizer: TokenizerInfo
    variants: dict[Precision, Variant]
    source: Source
    versions: dict[str, str]  # package versions used at export
    created_at: str
    schema_version: int = SCHEMA_VERSION
    probe: ProbeInfo | None = None
    rejected: dict[str, str] = field(default_factory=dict)  # variant -> why it failed its gate (not written)
    # Per-dimension [minimums, maximums] of the fp32 vectors of the calibration texts, "raw" and "normalized",
    # for int8 / uint8 output (jina_onnx.quantize); empty in artifacts from before they were measured.
    output_ranges: dict[str, Any] = field(default_factory=dict)
    # Free-form notes; the runtime reads only extra["openvino"]["bf16"], the bf16 gate run at export.
    # extra["measured_on"]: the CPU (name, class, features) the export measured its gates on.
    extra: dict[str, Any] = field(default_factory=dict)
    # sha256 of the artifact's other files (config.json, tokenizer and sentence-transformers configs), by path.
    files: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        data["variants"] = {p.value: asdict(v) for p, v in self.variants.items()}
        return json.dumps(data, indent=2, default=_enum_value, sort_keys=False) + "\n"

    def save(self, directory: Path) -> Path:
        path = Path(directory) / MANIFEST_FILE
        path.write_text(self.to_json(), encoding="utf-8")
        return path


def _enum_value(obj: object) -> object:
    if isinstance(obj, Enum):
        return obj.value
    raise TypeError(f"not JSON serializable: {obj!r}")


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large graphs don't need to fit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def _inside(target: Path, root: Path) -> bool:
    if target.is_relative_to(root):
        return True
    return root.parent.name == "snapshots" and target.is_relative_to(root.parent.parent / "blobs")


def safe_member(directory: Path, name: str) -> Path:
    """Resolve a file name from a manifest, refusing any that would leave the artifact directory."""
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or ".." in pure.parts or "\\" in name:
        raise ArtifactError(
            f"{directory / MANIFEST_FILE}: file name {name!r} points outside the artifact directory; "
            "re-export the model"
        )
    path = directory / pure
    # A symlink inside the artifact must not lead out of it either, except a Hub snapshot's links into its
    # repository's blobs (huggingface_hub's cache: repo/snapshots/COMMIT/name -> repo/blobs/ETAG).
    if path.is_symlink() and not _inside(path.resolve(), directory.resolve()):
        raise ArtifactError(f"{path}: a symlink to {path.resolve()}, outside the artifact directory; re-export")
    return path


def load_manifest(directory: Path) -> Manifest:
    """Read and validate `manifest.json` of an artifact directory.

    Example:
        >>> m = load_manifest(Path("~/.cache/jina-onnx/jina-embedding-t-en-v1").expanduser())  # doctest: +SKIP
        >>> m.dim  # doctest: +SKIP
        312
    """
    path = Path(directory) / MANIFEST_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ArtifactError(f"{path}: missing; this is not an exported jina-onnx artifact") from e
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: unreadable ({e}); re-export the model") from e
    try:
        return _parse(raw)
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{path}: malformed manifest ({type(e).__name__}: {e}); re-export the model") from e


def _parse(raw: dict[str, Any]) -> Manifest:
    version = raw.get("schema_version")
    if not isinstance(version, int):
        raise ArtifactError("no schema_version; re-export the model")
    if version > SCHEMA_VERSION:
        raise ArtifactError(
            f"schema_version {version} is newer than this jina-onnx understands ({SCHEMA_VERSION}); "
            "upgrade jina-onnx or re-export with this version"
        )
    variants = {}
    for key, v in raw["variants"].items():
        precision = Precision(key)
        variants[precision] = Variant(
            precision=Precision(v["precision"]),
            file=str(v["file"]),
            sha256=str(v["sha256"]),
            opset=int(v["opset"]),
            parity=Parity(**v["parity"]),
            gate=str(v.get("gate", "")),
            built_from=str(v.get("built_from", "")),
            fused_ops={str(k): int(n) for k, n in v.get("fused_ops", {}).items()},
            details=dict(v.get("details", {})),
        )
        if variants[precision].precision is not precision:
            raise ArtifactError(f"variant {key!r} declares precision {v['precision']!r}")
    if not variants:
        raise ArtifactError("lists no ONNX variant; re-export the model")
    dim, max_length = int(raw["dim"]), int(raw["max_length"])
    if dim <= 0 or max_length <= 0:
        raise ArtifactError(f"dim {dim} and max_length {max_length} must be positive")
    return Manifest(
        name=str(raw["name"]),
        architecture=Architecture(raw["architecture"]),
        dim=dim,
        max_length=max_length,
        pooling=Pooling(raw["pooling"]),
        normalize=bool(raw["normalize"]),
        inputs=tuple(raw["inputs"]),
        tokenizer=TokenizerInfo(**raw["tokenizer"]),
        variants=variants,
        source=Source(**raw["source"]),
        versions=dict(raw["versions"]),
        created_at=str(raw["created_at"]),
        schema_version=version,
        probe=ProbeInfo(**raw["probe"]) if raw.get("probe") else None,
        rejected=dict(raw.get("rejected", {})),
        output_ranges=dict(raw.get("output_ranges", {})),
        extra=dict(raw.get("extra", {})),
        files={str(k): str(v) for k, v in raw.get("files", {}).items()},
    )
