"""The README's Python snippets run as written."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_python_usage_snippet_runs(artifact, tmp_path: Path, monkeypatch, capsys) -> None:
    shutil.copytree(artifact("t"), tmp_path / "jina-embedding-t-en-v1")
    monkeypatch.setenv("JINA_ONNX_HOME", str(tmp_path))
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    usage = next(b for b in blocks if "build_model(" in b)
    exec(compile(usage, "README.md", "exec"), {})
    shape, similarity = capsys.readouterr().out.splitlines()
    assert shape == "(2, 312)" and -1 <= float(similarity) <= 1
