"""`import jina_onnx`, building a model, encoding and the CLI's help never load torch & co."""

from __future__ import annotations

import json
import subprocess
import sys

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
