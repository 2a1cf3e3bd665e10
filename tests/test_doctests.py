"""The package's examples run as doctests, offline, under their real import names (`jina_onnx.*`).

Examples that need what a test run does not have say so here: a module with `# doctest: +SKIP` lines must be in
SKIPPED with the reason, so a new skipped example without one fails this test.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import shutil
from pathlib import Path

import pytest

SKIPPED = {
    "jina_onnx.model": "reads a corpus file that the example only names (`encode_iter`)",
    "jina_onnx.manifest": "loads from the user's cache path, which a test must not touch",
    "jina_onnx.verify": "verifies the user's cache path, which a test must not touch",
    "jina_onnx.probe": "times a model on the probe texts; covered by tests/test_variants.py",
    "jina_onnx.loader": "names an artifact directory the reader would have",
    "jina_onnx.hub": "fetches from the Hugging Face Hub; tests/test_hub_runtime.py runs a loopback Hub",
    "jina_onnx.foreign": "reads a third-party export the reader would have; tests/test_foreign.py makes one",
    "jina_onnx.engines": "opens a model file the reader would have",
    "jina_onnx.engines.openvino": "needs the `openvino` extra and a model file",
    "jina_onnx.corpus.job": "writes a corpus job's output into the working directory",
    "jina_onnx.corpus.ray": "needs a Ray cluster",
    "jina_onnx.corpus.loopback": "re-runs a command in a new network namespace",
    "jina_onnx.serve.app": "needs a listening server",
    "jina_onnx.serve.batcher": "needs a running event loop and a model",
    "jina_onnx.serve.loading": "loads models into a server",
    "jina_onnx.serve.ray": "deploys on a Ray cluster; tests/test_ray_serve.py runs one",
    "jina_onnx.export": "exports from PyTorch (minutes); tests/test_export.py does it",
    "jina_onnx.export.exporter": "exports from PyTorch (minutes); tests/test_export.py does it",
    "jina_onnx.export.synthetic": "writes checkpoints; conftest.py does it",
    "jina_onnx.export.hub": "downloads from the Hugging Face Hub",
    "jina_onnx.export.fp16": "converts an exported graph; tests/test_variants.py does it",
    "jina_onnx.export.static_int8": "quantizes an exported graph; tests/test_static_int8.py does it",
}


def _modules() -> list[str]:
    import jina_onnx.export  # its own directory (pyproject's package-dir): walked separately

    names = ["jina_onnx", "jina_onnx.export"]
    for package in (jina_onnx, jina_onnx.export):
        names += [info.name for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")]
    return sorted(n for n in names if not n.endswith("__main__"))


@pytest.fixture(scope="module")
def globs(artifact, tmp_path_factory, monkeypatch_module):  # type: ignore[no-untyped-def]
    """What the examples assume: `model`, a t model that `build_model("jina-embedding-t-en-v1")` also finds."""
    from jina_onnx import build_model
    from jina_onnx.manifest import load_manifest

    home = tmp_path_factory.mktemp("doctest-home")
    shutil.copytree(artifact("t"), home / "jina-embedding-t-en-v1")
    monkeypatch_module.setenv("JINA_ONNX_HOME", str(home))
    model = build_model("jina-embedding-t-en-v1", device="cpu", precision="fp32")
    return {"model": model, "manifest": load_manifest(home / "jina-embedding-t-en-v1"), "Path": Path}


@pytest.fixture(scope="module")
def monkeypatch_module():  # type: ignore[no-untyped-def]
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.mark.parametrize("name", _modules())
def test_examples_run(name: str, globs) -> None:  # type: ignore[no-untyped-def]
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    tests = finder.find(module, name, globs={**module.__dict__, **globs})
    skipped = [t.name for t in tests for e in t.examples if e.options.get(doctest.SKIP)]
    if skipped:
        assert name in SKIPPED, f"{name} skips examples ({skipped[0]}, ...) without saying why: add it to SKIPPED"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (output above)"


def test_every_skip_reason_is_still_needed() -> None:
    with_skips = set()
    for name in _modules():
        module = importlib.import_module(name)
        for test in doctest.DocTestFinder().find(module, name):
            if any(e.options.get(doctest.SKIP) for e in test.examples):
                with_skips.add(name)
    assert set(SKIPPED) <= with_skips, f"no skipped examples left in {sorted(set(SKIPPED) - with_skips)}"
