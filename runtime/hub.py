"""Models straight from the Hugging Face Hub: `build_model("org/repo")`, `-m org/repo` everywhere.

An id that is not a local directory or an exported name is opened here, with `huggingface_hub` (its own cache
layout, so other tools share the files; `HF_TOKEN`, `HF_HUB_CACHE`, `HF_ENDPOINT` and `HF_HUB_OFFLINE` are
read when a model is opened, not when Python started):

1. `open_repo` fetches the small files (manifest, configs, tokenizer, pooling, probe: every `*.json`) of one
   revision and returns its snapshot directory, which is an artifact directory like any other;
2. the load plan decides what runs, and each graph it opens is fetched then (`fetch`): a named precision
   fetches one graph, `precision="auto"` its candidates, never the rest;
3. every fetched file is checked against the manifest's sha256 (`jina_onnx.artifact`); a damaged or partial
   download is deleted and fetched once more (`refetch`), and refused (never used) if it is still wrong.

A third-party repository in the same layout (no manifest.json) loads as a local one does: its fp32 graph
(`onnx/model.onnx`) is fetched with the small files, and `build_model` warns that jina-onnx did not gate it.

Example:
    >>> directory = open_repo("someone/jina-embedding-t-en-v1-onnx", revision="v1.0")  # doctest: +SKIP
    >>> fetch(directory, "onnx/model_quantized.onnx")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ArtifactError, HubError, require
from .manifest import MANIFEST_FILE, safe_member, sha256_file

SMALL_FILES = ["*.json"]  # manifest, config, tokenizer, sentence-transformers configs, 1_Pooling/, probe
FOREIGN_GRAPHS = ["onnx/model.onnx", "model.onnx"]  # a third-party export's fp32 graph (jina_onnx.foreign)


@dataclass(frozen=True)
class _Remote:
    repo_id: str
    commit: str
    options: dict[str, Any]  # token, cache_dir, endpoint, local_files_only


_OPENED: dict[str, _Remote] = {}  # snapshot directory -> where its files come from


def is_hub_id(text: str) -> bool:
    """Whether `text` reads as a Hub id ("org/repo", optionally "@revision"), not a path.

    Example:
        >>> is_hub_id("jinaai/jina-embedding-t-en-v1"), is_hub_id("./models/t"), is_hub_id("a/b/c")
        (True, False, False)
    """
    repo = text.split("@", 1)[0]
    return repo.count("/") == 1 and not repo.startswith((".", "/", "~")) and all(repo.split("/"))


def open_repo(
    repo_id: str,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> Path:
    """The snapshot directory of `repo_id` at `revision` ("org/repo@revision" works too) with its small files.

    Offline (`local_files_only`, or `HF_HUB_OFFLINE=1`), it is the cached snapshot; nothing is fetched.
    """
    if "@" in repo_id:
        repo_id, pinned = repo_id.split("@", 1)
        if revision is not None and revision != pinned:
            raise HubError(f"{repo_id}@{pinned} and revision={revision!r} disagree; give the revision once", "revision")
        revision = pinned
    options = _options(token, local_files_only)
    directory = _snapshot(repo_id, revision, SMALL_FILES, options)
    remote = _Remote(repo_id, directory.name, options)
    _OPENED[str(directory)] = remote
    if not (directory / MANIFEST_FILE).is_file():
        # A third-party export: its fp32 graph is what `build_model` runs (jina_onnx.foreign).
        directory = _snapshot(repo_id, remote.commit, FOREIGN_GRAPHS, options)
        if not any((directory / graph).is_file() for graph in FOREIGN_GRAPHS):
            raise HubError(
                f"{repo_id} has no {MANIFEST_FILE} and no ONNX graph (onnx/model.onnx): it is not an ONNX export; "
                f"export it first: jina-onnx export {repo_id}",
                "repo",
            )
    return directory


def fetch(directory: Path, name: str) -> Path:
    """The local path of `name` in an artifact directory, fetched first if it is a Hub snapshot without it.
    The caller checks it against the manifest (`artifact.checked_file`, `artifact.open_checked`) and calls
    `refetch` when it does not match."""
    path = safe_member(directory, name)
    remote = _OPENED.get(str(directory))
    if remote is not None and not path.is_file():
        _download(remote, name, force=False)
    return path


def refetch(directory: Path, name: str, sha256: str) -> Path | None:
    """A Hub file that failed its check, deleted (link and blob) and fetched once more, and refused if it is
    still wrong; None for a local artifact, which has nowhere to fetch from."""
    remote = _OPENED.get(str(directory))
    if remote is None:
        return None
    path = safe_member(directory, name)
    _forget(path)
    _download(remote, name, force=True)
    actual = sha256_file(path)
    if actual != sha256:
        _forget(path)
        raise ArtifactError(
            f"{remote.repo_id}@{remote.commit[:12]}: {name} has sha256 {actual[:12]}... but its manifest says "
            f"{sha256[:12]}... (fetched twice): the file on the Hub is damaged or was replaced without its "
            "manifest; ask the repository's owner to re-export it, or pin an earlier revision"
        )
    return path


def fetch_all(directory: Path, names: list[str]) -> None:
    """Every file in `names` present locally (`jina-onnx verify` of a Hub id checks them all)."""
    for name in names:
        if not safe_member(directory, name).is_file():
            fetch(directory, name)


def _options(token: str | bool | None, local_files_only: bool) -> dict[str, Any]:
    offline = hub_offline()
    return {
        "token": token,
        "cache_dir": os.environ.get("HF_HUB_CACHE") or None,
        "endpoint": os.environ.get("HF_ENDPOINT") or None,
        "local_files_only": bool(local_files_only or offline),
    }


def _snapshot(repo_id: str, revision: str | None, patterns: list[str], options: dict[str, Any]) -> Path:
    hub = require("huggingface_hub", "cpu")
    try:
        path = hub.snapshot_download(
            repo_id, revision=revision, allow_patterns=patterns, tqdm_class=_silent(hub), **_for_hub(hub, options)
        )
        return Path(path)
    except Exception as error:
        raise _hub_error(hub, error, repo_id, revision, options) from None


def _download(remote: _Remote, name: str, *, force: bool) -> None:
    hub = require("huggingface_hub", "cpu")
    try:
        hub.hf_hub_download(
            remote.repo_id, name, revision=remote.commit, force_download=force, **_for_hub(hub, remote.options)
        )
    except Exception as error:
        if remote.options["local_files_only"] and isinstance(error, hub.errors.LocalEntryNotFoundError):
            raise HubError(
                f"{remote.repo_id}: {name} is not in the Hugging Face cache and the Hub is offline (HF_HUB_OFFLINE); "
                "load this precision once online, or name one that is cached",
                "network",
            ) from None
        raise _hub_error(hub, error, remote.repo_id, remote.commit, remote.options) from None


def _for_hub(hub: Any, options: dict[str, Any]) -> dict[str, Any]:
    """huggingface_hub's keyword arguments; `endpoint` only where set (its default is read at its import)."""
    return {key: value for key, value in options.items() if value is not None or key == "token"}


def _silent(hub: Any) -> Any:
    """A bar class that shows nothing: "Fetching 9 files" for a few small ones is noise (a graph's own download
    bar, from `fetch`, stays: that is the long part)."""

    class Silent(hub.utils.tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "disable": True})

    return Silent


def _forget(path: Path) -> None:
    """Delete a cached file: the snapshot's link and the blob it points to, so the next fetch downloads it."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE is set now (huggingface_hub reads it once, when it is first imported)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_error(
    hub: Any, error: Exception, repo_id: str, revision: str | None, *, offline: bool = False, instead: str
) -> Exception:
    """huggingface_hub's error as a one-line HubError that says what failed (network, repo or revision) and
    what to do; `instead` is the local alternative ("give an artifact directory"). The export's download uses
    it too. Anything else is returned as it was.

    Example:
        >>> raise hub_error(hub, error, "org/repo", "v2", instead="give an artifact directory") from None  # doctest: +SKIP
    """
    errors = hub.errors
    at = f"@{revision}" if revision else ""
    if isinstance(error, errors.RevisionNotFoundError):
        return HubError(f"{repo_id} has no revision {revision!r}; check the branch, tag or commit", "revision")
    if isinstance(error, (errors.RepositoryNotFoundError, errors.GatedRepoError)):
        return HubError(
            f"Hub repository {repo_id!r} does not exist or is private or gated (log in with `hf auth login`, or "
            "set HF_TOKEN)",
            "repo",
        )
    if isinstance(error, errors.LocalEntryNotFoundError):
        where = "the Hub is offline (HF_HUB_OFFLINE)" if offline else "the Hub cannot be reached"
        return HubError(
            f"{repo_id}{at} is not in the Hugging Face cache and {where}: load it once online, or {instead}",
            "network",
        )
    if isinstance(error, (OSError, errors.HfHubHTTPError)):
        return HubError(f"fetching {repo_id}{at} from the Hub failed: {error}", "network")
    return error


def _hub_error(hub: Any, error: Exception, repo_id: str, revision: str | None, options: dict[str, Any]) -> Exception:
    return hub_error(
        hub, error, repo_id, revision, offline=options["local_files_only"], instead="give an artifact directory"
    )
