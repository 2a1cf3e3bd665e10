"""Every code block of the README is tested: Python blocks run as written, shell lines are run or checked.

Shell lines are checked against what they call: `jina-onnx` lines parse with the CLI's own parser, `python -m`
lines name options their module's `--help` lists, `pip install` names extras pyproject defines, `bash` runs
files that exist. The few that cannot run here say why in NOT_RUN.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
NOT_RUN = {
    "curl": "needs a running server; tests/test_server.py makes the same request with httpx",
    "ray": "`ray start` starts a cluster; tests/test_ray_cluster.py starts local ones",
    "cat": "a pipe from the reader's own file; `jina-onnx encode` reading stdin is tested in tests/test_cli.py",
}


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def shell_lines() -> list[str]:
    lines = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            for command in line.split("  #")[0].split(" # ")[0].split(" && "):  # `a && b`: two commands
                if command.strip():
                    lines.append(command.strip())
    return lines


def test_readme_is_a_short_user_guide() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 300
    assert text.count("```bash\nbash scripts/main.sh") == 1 and "bash scripts/test.sh" in text.split("\n## ")[0]


def test_python_usage_snippet_runs(artifact, tmp_path: Path, monkeypatch, capsys) -> None:
    shutil.copytree(artifact("t"), tmp_path / "jina-embedding-t-en-v1")
    monkeypatch.setenv("JINA_ONNX_HOME", str(tmp_path))
    usage = next(b for b in blocks("python") if "build_model(" in b)
    exec(compile(usage, "README.md", "exec"), {})
    shape, similarity = capsys.readouterr().out.splitlines()
    assert shape == "(2, 312)" and -1 <= float(similarity) <= 1


def test_corpus_snippets_run(artifact, tmp_path: Path, monkeypatch) -> None:
    from jina_onnx.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    shutil.copy(ROOT / "data" / "sts-dev.tsv", tmp_path / "data" / "sts-dev.tsv")
    cut = next(line for line in shell_lines() if line.startswith("cut "))
    subprocess.run(cut, shell=True, check=True, cwd=tmp_path)
    embed = next(line for line in shell_lines() if line.startswith("jina-onnx embed sts.txt"))
    argv = shlex.split(embed)[1:]
    argv[argv.index("-m") + 1] = str(artifact("t"))  # the README names the exported model; here: the test's
    assert main(["-q", *argv, "--device", "cpu"]) == 0
    read_back = next(b for b in blocks("python") if "pq.read_table" in b)
    scope: dict = {}
    exec(compile(read_back, "README.md", "exec"), scope)
    assert scope["vectors"].shape == (1500, 312) and len(set(scope["ids"])) == 1500


def test_export_snippet_runs(checkpoint, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JINA_ONNX_HOME", str(tmp_path / "home"))
    shutil.copytree(checkpoint("t"), tmp_path / "my-checkpoint")
    snippet = next(b for b in blocks("python") if "export_model(" in b)
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    assert (Path(scope["path"]) / "manifest.json").is_file() and Path(scope["path"]).name == "my-model"


def test_openai_snippet_runs_against_the_server(artifact) -> None:
    from tests.test_server import server

    snippet = next(b for b in blocks("python") if "OpenAI(" in b)
    with server("-m", str(artifact("t")), "--precision", "fp32") as (url, _):
        scope: dict = {}
        exec(compile(snippet.replace("http://127.0.0.1:8080", url), "README.md", "exec"), scope)
    assert len(scope["vector"]) == 312


def test_every_shell_line_is_checked() -> None:
    from jina_onnx.cli import _parser

    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    helps: dict[str, str] = {}
    for line in shell_lines():
        words = shlex.split(line.split(">")[0].split("|")[-1])
        program = Path(words[0]).name
        if line.startswith("cat ") or program in NOT_RUN:
            assert (line.split()[0] if line.startswith("cat ") else program) in NOT_RUN
        elif program == "jina-onnx":
            try:
                _parser().parse_args(words[1:])
            except SystemExit as exit:
                pytest.fail(f"README line does not parse: {line} (exit {exit.code})")
        elif program == "bash":
            assert (ROOT / words[1]).is_file(), line
        elif program == "pip":
            spec = next(w for w in words if w.startswith("jina-onnx[") or w.startswith(".["))
            asked = set(spec[spec.index("[") + 1 : spec.index("]")].split(","))
            assert asked <= extras, f"{line}: no extra {sorted(asked - extras)}"
        elif program == "python":
            rest = words[words.index("-m") + 1 :]
            command = rest[:2] if len(rest) > 1 and not rest[1].startswith("-") else rest[:1]  # module [subcommand]
            key = " ".join(command)
            if key not in helps:
                helps[key] = subprocess.run(
                    [sys.executable, "-m", *command, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
                ).stdout
            for option in (w.split("=")[0] for w in words if w.startswith("--")):
                assert option in helps[key], f"{line}: {key} has no {option}"
        elif program == "cut":
            continue  # run by test_corpus_snippets_run
        else:
            pytest.fail(f"README line not checked by any rule: {line}")


def test_framework_snippet_runs(artifact, tmp_path: Path, monkeypatch) -> None:
    shutil.copytree(artifact("t"), tmp_path / "jina-embedding-t-en-v1")
    monkeypatch.setenv("JINA_ONNX_HOME", str(tmp_path))
    snippet = next(b for b in blocks("python") if "jina_onnx.langchain" in b)
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    assert len(scope["query"]) == 312 and np.asarray(scope["nodes"]).shape == (2, 312)
    scope["documents"].warm_up()
    assert scope["documents"].meta_fields_to_embed == ["title"]
