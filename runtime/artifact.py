"""Opening an artifact: a model name, a directory or a Hugging Face Hub id, ours or another tool's export.

The layer under everything that loads a model: `resolve_artifact` finds the directory (fetching a Hub id's small
files: `jina_onnx.hub`), `read_manifest` reads what it holds (or builds the manifest of a third-party export:
`jina_onnx.foreign`), and `checked_file` / `open_checked` hand out each file the loader asks for, fetched
where needed and checked against the manifest's sha256. Nothing here imports the model or the loader
(docs/architecture.md, "Layers").

Example:
    >>> directory = resolve_artifact("jina-embedding-t-en-v1", None)
    >>> read_manifest(directory).dim
    312
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from . import hub
from .errors import ArtifactError, InputTypeError, ModelNotFoundError
from .foreign import foreign_manifest, looks_foreign
from .manifest import MANIFEST_FILE, Manifest, Precision, load_manifest, sha256_file
from .registry import find_spec, home_dir

log = logging.getLogger("jina_onnx")
T = TypeVar("T")


def read_manifest(directory: Path) -> Manifest:
    """The artifact's manifest; for a third-party export without one (jina_onnx.foreign), the manifest its own
    files describe, with a warning, once per directory, that jina-onnx did not gate them."""
    if (directory / MANIFEST_FILE).is_file() or not looks_foreign(directory):
        return load_manifest(directory)
    manifest = foreign_manifest(directory)
    if str(directory) not in _WARNED_FOREIGN:
        _WARNED_FOREIGN.add(str(directory))
        log.warning(
            "jina-onnx: %s has no %s: running its %s as exported by another tool, not gated by jina-onnx against "
            "PyTorch (re-export with jina-onnx export to get gated variants)",
            directory,
            MANIFEST_FILE,
            manifest.variants[Precision.FP32].file,
        )
    return manifest


_WARNED_FOREIGN: set[str] = set()  # third-party exports warned about, once each


def resolve_artifact(
    name_or_path: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> Path:
    """The artifact directory for a name (in the cache), a path, or a Hub id (fetched: `jina_onnx.hub`); raises
    with what to do if there is none."""
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path):
        raise InputTypeError(f"name_or_path must be a model name or a directory, got {name_or_path!r}")
    given = Path(name_or_path).expanduser()
    if given.is_dir():
        if not (given / MANIFEST_FILE).is_file() and not looks_foreign(given):
            raise ModelNotFoundError(
                f"{given} has no {MANIFEST_FILE} and no onnx/model.onnx with config.json and tokenizer.json: it is "
                f"not an exported artifact. If it is a checkpoint, export it first: jina-onnx export {given} --out DIR"
            )
        return given
    spec = find_spec(str(name_or_path))
    name = spec.name if spec else str(name_or_path)
    candidate = home_dir(cache_dir) / name
    if (candidate / MANIFEST_FILE).is_file():
        return candidate
    if spec is None and "/" not in str(name_or_path):
        # Not a name we know, nor a hub id: `jina-onnx export` of it would fail too, so say what would work.
        import difflib

        from .registry import list_models

        known = [model.name for model in list_models()]
        close = difflib.get_close_matches(str(name_or_path), known, n=1, cutoff=0.8)
        raise ModelNotFoundError(
            f"model {str(name_or_path)!r} is not a known model name, an exported model in {home_dir(cache_dir)} or a "
            f"directory{f'; did you mean {close[0]!r}?' if close else ''}. Known names: {', '.join(known)} "
            f"(jina-onnx models); another checkpoint: jina-onnx export PATH_OR_HUB_ID --name {name_or_path}"
        )
    if given.exists():  # a file where an artifact directory goes: exporting it would fail as well
        raise ModelNotFoundError(
            f"{given} is a file, not a model: give an artifact directory (the one `jina-onnx export` wrote) or a "
            "model name from `jina-onnx models`"
        )
    if given.is_absolute() or str(name_or_path).startswith((".", "~")):
        # A path that is not there: the export hint would fail the same way, so say what is missing.
        raise ModelNotFoundError(
            f"{given}: no such directory; give an artifact directory (the one `jina-onnx export` wrote) or a model "
            "name from `jina-onnx models`"
        )
    if spec is None and hub.is_hub_id(str(name_or_path)):
        return hub.open_repo(str(name_or_path), revision=revision, token=token, local_files_only=local_files_only)
    cache_flag = f" --out {candidate}" if cache_dir is not None else ""
    source = spec.hub_id if spec else str(name_or_path)
    raise ModelNotFoundError(
        f"model {str(name_or_path)!r} is not exported yet (looked in {candidate}); run: "
        f"jina-onnx export {source}{cache_flag}"
    )


def checked_file(directory: Path, name: str, sha256: str) -> Path:
    """The local path of an artifact file, fetched first where the artifact was opened from the Hub, and
    checked against the sha256 its manifest records: a missing or corrupted file is refused, never used.

    Example:
        >>> directory = resolve_artifact("jina-embedding-t-en-v1", None)
        >>> checked_file(directory, manifest.tokenizer.file, manifest.tokenizer.sha256).name
        'tokenizer.json'
    """
    path, _ = open_checked(directory, name, sha256, lambda path: None)
    return path


def open_checked(directory: Path, name: str, sha256: str, use: Callable[[Path], T]) -> tuple[Path, T]:
    """`(path, use(path))` for an artifact file (a graph: `use` builds its session), with the file's sha256
    computed on a second thread while `use` runs, and the result handed out only if it matches the manifest.

    Hashing a graph costs about as long as building its session (0.03-0.06 s for 43-90 MB here) and both leave
    a core idle, so a load takes the longer of the two instead of their sum. Nothing runs on what `use` built
    before the check passed: a mismatch drops it and raises (a Hub file is fetched once more and opened again,
    `hub.refetch`); where `use` fails on a damaged file, the checksum error is the one raised.

    Example:
        >>> directory = resolve_artifact("jina-embedding-t-en-v1", None)
        >>> variant = read_manifest(directory).variants[Precision.INT8]
        >>> path, size = open_checked(directory, variant.file, variant.sha256, lambda path: path.stat().st_size)
        >>> path.name, size > 0
        ('model_quantized.onnx', True)
    """
    path = hub.fetch(directory, name)  # a Hub id: downloaded first where missing, checked below
    if not path.is_file():
        raise ArtifactError(f"{path}: missing; the artifact is incomplete, re-export the model")
    with ThreadPoolExecutor(1, thread_name_prefix="jina-onnx-sha256") as pool:
        digest = pool.submit(sha256_file, path)
        try:
            opened, failure = use(path), None
        except Exception as error:  # judged after the checksum: a damaged file explains it
            opened, failure = None, error
        actual = digest.result()
    if actual == sha256:
        if failure is not None:
            raise failure
        return path, opened  # type: ignore[return-value]
    del opened  # built from a file that is not the one the manifest describes: never used
    repaired = hub.refetch(directory, name, sha256)
    if repaired is None:
        raise _mismatch(path, actual, sha256) from failure
    return repaired, use(repaired)


def _mismatch(path: Path, actual: str, expected: str) -> ArtifactError:
    return ArtifactError(
        f"{path}: checksum mismatch (sha256 {actual[:12]}..., manifest says {expected[:12]}...); "
        "the file is corrupted or was replaced: re-export the model"
    )
