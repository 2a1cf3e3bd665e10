"""The hub code path, run offline against a local snapshot in huggingface_hub's cache layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from jina_onnx.cli import main
from jina_onnx.errors import HubError
from jina_onnx.export import export_model
from jina_onnx.export.hub import resolve_source
from jina_onnx.manifest import load_manifest

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(checkpoint, tmp_path: Path) -> Path:
    """A huggingface_hub cache holding jinaai/jina-embedding-t-en-v1 at COMMIT, as a download leaves it."""
    repo = tmp_path / "hub" / "models--jinaai--jina-embedding-t-en-v1"
    shutil.copytree(checkpoint("t"), repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return tmp_path / "hub"


def test_export_by_name_uses_the_hub_snapshot(hub_cache: Path, tmp_path: Path) -> None:
    # fp32 only: resolving the name is the point (the other precisions are built the same from any source).
    out = export_model("jina-embedding-t-en-v1", tmp_path / "art", hub_cache=hub_cache, precisions=["fp32"])
    manifest = load_manifest(out)
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md").data  # the model card names what it was exported from
    assert (card.base_model, card.license) == ("jinaai/jina-embedding-t-en-v1", "apache-2.0")
    assert manifest.name == "jina-embedding-t-en-v1"
    assert (manifest.source.kind, manifest.source.location, manifest.source.revision) == (
        "hub",
        "jinaai/jina-embedding-t-en-v1",
        COMMIT,
    )


def test_revision_pins_the_commit(hub_cache: Path) -> None:
    resolved = resolve_source("jinaai/jina-embedding-t-en-v1", revision=COMMIT, hub_cache=hub_cache)
    assert resolved.revision == COMMIT and (resolved.directory / "config.json").is_file()


def test_unreachable_hub_is_reported_as_network(tmp_path: Path) -> None:
    with pytest.raises(
        HubError, match="not in the Hugging Face cache and the Hub (cannot be reached|is offline)"
    ) as info:
        resolve_source("jinaai/jina-embedding-b-en-v1", hub_cache=tmp_path / "empty")
    assert info.value.reason == "network" and info.value.exit_code == 3


def test_cli_exit_code_3_when_offline(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    assert main(["export", "jina-embedding-b-en-v1", "--out", str(tmp_path / "o")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("jina-onnx: error: jinaai/jina-embedding-b-en-v1 is not in the Hugging Face cache")
    assert err[-1].endswith("load it once online, or pass a local checkpoint directory")
