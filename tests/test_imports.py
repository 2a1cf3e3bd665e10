"""`import jina_onnx`, building a model, encoding and the CLI's help never load torch & co."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = (
    "torch",
    "transformers",
    "optimum",
    "sentence_transformers",
    "ray",
    "starlette",
    "fastapi",
    "uvicorn",
    "prometheus_client",
    "pyarrow",
    "openvino",
    "langchain_core",
    "llama_index",
    "haystack",
    "tiktoken",
)

PROBE = """
import json, sys
{body}
heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))
print(json.dumps(heavy))
"""


def loaded_heavy_modules(body: str) -> list[str]:
    code = PROBE.format(body=body, heavy=HEAVY)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_is_light() -> None:
    assert loaded_heavy_modules("import jina_onnx") == []
    # Importing the package must not even pull in onnxruntime: that waits for build_model.
    assert (
        "onnxruntime"
        not in subprocess.run(
            [sys.executable, "-c", "import sys, jina_onnx; print(sorted(sys.modules))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )


def test_build_and_encode_are_torch_free(artifact) -> None:
    body = (
        f"from jina_onnx import build_model, encode, cos_sim\n"
        f"m = build_model({str(artifact('t'))!r}, device='cpu')\n"
        f"a, b = encode(model=m, data=['how is the weather today', 'What is the current weather like today?'])\n"
        f"print(cos_sim(a, b))"
    )
    assert loaded_heavy_modules(body) == []


def test_cli_help_and_similarity_are_torch_free(artifact) -> None:
    body = (
        "from jina_onnx.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"assert main(['-q', 'similarity', '-m', {str(artifact('t'))!r}, 'a', 'b']) == 0"
    )
    assert loaded_heavy_modules(body) == []


def _runtime_imports() -> dict[str, set[str]]:
    """Module -> the runtime modules it imports, at the top or inside a function (`from .x import y` too)."""
    import ast

    root = Path(__file__).resolve().parent.parent / "runtime"
    files = {
        ".".join(("jina_onnx", *f.relative_to(root).with_suffix("").parts)).removesuffix(".__init__"): f
        for f in root.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
                target = ".".join(p for p in (base, node.module or "") if p)
                found |= {t for t in (target, *(f"{target}.{a.name}" for a in node.names)) if t in files}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name in files}
        graph[name] = found - {name}
    return graph


def test_no_import_cycle_in_the_runtime() -> None:
    """The load path goes down the layers (docs/architecture.md): no module imports one that imports it back. A
    package importing its own modules (its __init__) is how packages work, not a cycle."""
    graph = _runtime_imports()

    def related(a: str, b: str) -> bool:
        return a.startswith(b + ".") or b.startswith(a + ".")

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for step in graph[start]:
            if related(start, step) or step in seen:
                continue
            if step == goal or reaches(step, goal, seen | {step}):
                return True
        return False

    cycles = sorted(m for m in graph if reaches(m, m, {m}))
    assert cycles == [], f"modules on an import cycle: {cycles}"
    assert "jina_onnx.model" in graph["jina_onnx.build"] and "jina_onnx.build" not in graph["jina_onnx.model"]
