"""The export stage: checkpoints -> validated ONNX artifacts. Needs `pip install "jina-onnx[export,cpu]"`.

Example:
    >>> from jina_onnx.export import export_model
    >>> path = export_model("jina-embedding-t-en-v1")  # doctest: +SKIP
"""

from __future__ import annotations

from jina_onnx.errors import require

for _module in ("torch", "transformers", "onnx", "huggingface_hub"):
    require(_module, "export")

from .exporter import export_model  # noqa: E402

__all__ = ["export_model"]
