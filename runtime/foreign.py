"""Other people's ONNX exports: a directory in the Hugging Face / sentence-transformers layout, without a
jina-onnx manifest (another exporter's output, sentence-transformers' `backend="onnx"` save, a Hub download).

`foreign_manifest` builds the manifest jina-onnx would have written from the files that are there:
`config.json` (architecture, width), `tokenizer.json` (+ `tokenizer_config.json` for padding and the maximum
length), the sentence-transformers files (`modules.json`, `1_Pooling/config.json`, `sentence_bert_config.json`)
for pooling, normalization and the maximum length, and `onnx/model.onnx` (token-level output, pooled in numpy).
The files were not compared with PyTorch by jina-onnx: `build_model` says so once.

Example:
    >>> manifest = foreign_manifest(Path("all-MiniLM-L6-v2-onnx"))  # a sentence-transformers ONNX save  # doctest: +SKIP
    >>> manifest.pooling, manifest.normalize, manifest.max_length  # doctest: +SKIP
    (<Pooling.MEAN: 'mean'>, True, 256)
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from .errors import ArtifactError, require
from .manifest import Manifest, Parity, Pooling, Precision, Source, TokenizerInfo, Variant, sha256_file
from .registry import Architecture

GRAPHS = ("onnx/model.onnx", "model.onnx")  # where exporters put the fp32 token-level graph
# The other graphs of the layout, by transformers.js' names; only `jina-onnx verify --against` runs them (they
# are not gated, so `build_model` never picks them).
OTHER_GRAPHS = {Precision.INT8: "onnx/model_quantized.onnx", Precision.FP16: "onnx/model_fp16.onnx"}
NOT_GATED = "not gated by jina-onnx (a third-party export)"


def looks_foreign(directory: Path) -> bool:
    """Whether `directory` holds a third-party ONNX export jina-onnx can read (and no manifest)."""
    return (
        (directory / "tokenizer.json").is_file()
        and (directory / "config.json").is_file()
        and any((directory / g).is_file() for g in GRAPHS)
    )


def foreign_manifest(directory: Path, every_graph: bool = False) -> Manifest:
    """The manifest of a third-party export, from its own files (see the module docstring); fp32 only unless
    `every_graph` (for `jina-onnx verify`), which adds the quantized and fp16 graphs that are there."""
    config = _json(directory / "config.json")
    model_type = str(config.get("model_type", ""))
    architectures = {"bert": Architecture.BERT, "t5": Architecture.T5_ENCODER}
    if model_type not in architectures:
        raise ArtifactError(f"{directory}: config.json says model_type {model_type!r}; jina-onnx runs bert and t5")
    architecture = architectures[model_type]
    dim = int(config.get("hidden_size") or config.get("d_model") or 0)
    graph = next(g for g in GRAPHS if (directory / g).is_file())
    tokenizer_config = _json(directory / "tokenizer_config.json", required=False)
    tokenizers = require("tokenizers", "cpu")
    tokenizer = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
    pad_token = str(tokenizer_config.get("pad_token") or ("[PAD]" if architecture is Architecture.BERT else "<pad>"))
    pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None:
        raise ArtifactError(f"{directory}: the tokenizer has no padding token {pad_token!r}")
    sha = sha256_file(directory / graph)
    unchecked = Parity(float("nan"), float("nan"), float("nan"), 0, NOT_GATED)
    variants = {Precision.FP32: Variant(Precision.FP32, graph, sha, 0, unchecked, gate=NOT_GATED)}
    for precision, other in OTHER_GRAPHS.items() if every_graph else ():
        if (directory / other).is_file():
            variants[precision] = Variant(
                precision, other, sha256_file(directory / other), 0, unchecked, gate=NOT_GATED
            )
    return Manifest(
        name=directory.name,
        architecture=architecture,
        dim=dim,
        max_length=_max_length(directory, config, tokenizer_config),
        pooling=_pooling(directory),
        normalize=any(str(m.get("type", "")).endswith("Normalize") for m in _modules(directory)),
        inputs=("input_ids", "attention_mask", "token_type_ids")
        if architecture is Architecture.BERT
        else ("input_ids", "attention_mask"),
        tokenizer=TokenizerInfo(
            "tokenizer.json",
            sha256_file(directory / "tokenizer.json"),
            int(pad_id),
            int(tokenizer.get_vocab_size(with_added_tokens=True)),
        ),
        variants=variants,
        source=Source("local", str(directory), None, graph, sha),
        versions={},
        created_at=dt.datetime.fromtimestamp((directory / graph).stat().st_mtime, dt.timezone.utc).isoformat(),
        extra={"foreign": True},
    )


def _json(path: Path, required: bool = True) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if required:
            raise ArtifactError(f"{path}: missing; the directory is not a model in the Hugging Face layout") from None
        return {}
    except ValueError as e:
        raise ArtifactError(f"{path}: not valid JSON ({e})") from e
    return data if isinstance(data, dict) else {}


def _modules(directory: Path) -> list[dict[str, Any]]:
    path = directory / "modules.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []


def _pooling(directory: Path) -> Pooling:
    """The sentence-transformers pooling mode (both its old and new config keys); mean where none is given."""
    for module in _modules(directory):
        if str(module.get("type", "")).endswith("Pooling"):
            config = _json(directory / str(module.get("path", "1_Pooling")) / "config.json", required=False)
            mode = config.get("pooling_mode")
            if isinstance(mode, str):
                return Pooling({"mean": "mean", "cls": "cls", "max": "max"}.get(mode, "mean"))
            for key, pooling in (("pooling_mode_cls_token", Pooling.CLS), ("pooling_mode_max_tokens", Pooling.MAX)):
                if config.get(key):
                    return pooling
    return Pooling.MEAN


def _max_length(directory: Path, config: dict[str, Any], tokenizer_config: dict[str, Any]) -> int:
    for value in (
        _json(directory / "sentence_bert_config.json", required=False).get("max_seq_length"),
        tokenizer_config.get("model_max_length"),
        config.get("max_position_embeddings"),
    ):
        if isinstance(value, int) and 0 < value <= 100_000:
            return value
    return 512
