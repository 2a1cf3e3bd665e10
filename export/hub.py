"""Finding a checkpoint: a registry name, a hub id (downloaded with huggingface_hub) or a local directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from jina_onnx.errors import ExportError, require
from jina_onnx.registry import find_spec

# What a sentence-transformers / hub checkpoint needs; skips ONNX, TF, Flax and other extras.
HUB_PATTERNS = ["*.json", "*.txt", "*.model", "model.safetensors", "pytorch_model.bin"]


@dataclass(frozen=True)
class ResolvedSource:
    """A checkpoint on local disk and where it came from."""

    directory: Path
    kind: str  # "hub" or "local"
    location: str  # hub id or the directory as given
    revision: str | None  # the commit the hub resolved to
    name: str  # default artifact name


def resolve_source(
    source: str | os.PathLike[str], revision: str | None = None, hub_cache: str | os.PathLike[str] | None = None
) -> ResolvedSource:
    """Turn SOURCE into a local checkpoint directory, downloading from the hub when needed.

    Example:
        >>> resolve_source("jina-embedding-t-en-v1").location  # doctest: +SKIP
        'jinaai/jina-embedding-t-en-v1'
    """
    local = Path(source).expanduser()
    if local.is_dir():
        if revision is not None:
            raise ExportError(f"--revision {revision} applies to hub ids, but {source} is a local directory")
        return ResolvedSource(local, "local", str(source), None, local.resolve().name)
    text = str(source)
    spec = find_spec(text)
    if spec is not None:
        repo_id, name = spec.hub_id, spec.name
    elif text.count("/") == 1 and not text.startswith((".", "/", "~")):
        repo_id, name = text, text.split("/")[1]
    elif text.startswith((".", "/", "~")) and not local.exists():
        raise ExportError(f"{local}: no such directory; pass a checkpoint directory or a hub id")
    else:
        raise ExportError(
            f"source {text!r} is neither a directory nor a hub id; pass a checkpoint directory, a hub id "
            "like jinaai/jina-embedding-t-en-v1, or one of the names from `jina-onnx models`"
        )
    directory = download(repo_id, revision, hub_cache)
    return ResolvedSource(directory, "hub", repo_id, directory.name, name)


def download(repo_id: str, revision: str | None, hub_cache: str | os.PathLike[str] | None) -> Path:
    """snapshot_download with errors that say whether the network, the repo or the revision failed (the
    runtime's wording: `jina_onnx.hub.hub_error`)."""
    from jina_onnx.hub import hub_error, hub_offline

    hub = require("huggingface_hub", "export")
    try:
        path = hub.snapshot_download(repo_id, revision=revision, cache_dir=hub_cache, allow_patterns=HUB_PATTERNS)
    except Exception as error:
        raise hub_error(
            hub, error, repo_id, revision, offline=hub_offline(), instead="pass a local checkpoint directory"
        ) from error
    return Path(path)
