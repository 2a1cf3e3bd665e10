"""Reading a checkpoint in hub / sentence-transformers layout and loading it into PyTorch."""

from __future__ import annotations

import contextlib
import json
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jina_onnx.errors import ExportError
from jina_onnx.manifest import Pooling
from jina_onnx.registry import Architecture

SUPPORTED = "BERT (model_type 'bert', e.g. jina-embedding-t-en-v1) and T5 encoders (model_type 't5', s/b/l)"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # safetensors first: it cannot run code


@dataclass(frozen=True)
class Checkpoint:
    """What the export needs to know about a checkpoint directory, read from its files."""

    directory: Path
    architecture: Architecture
    config: dict[str, Any]  # config.json
    dim: int
    max_length: int  # sentence_bert_config max_seq_length, capped by the position table
    pooling: Pooling
    normalize: bool  # modules.json lists a Normalize module
    lowercase: bool  # sentence_bert_config do_lower_case
    weights: Path


def read_checkpoint(directory: Path) -> Checkpoint:
    """Inspect a checkpoint directory without loading weights; fails early on anything unsupported."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ExportError(f"{directory} has no config.json: not a checkpoint in hub or sentence-transformers layout")
    config = _read_json(config_path)
    architecture = _architecture(config, config_path)
    weights = next((directory / f for f in WEIGHT_FILES if (directory / f).is_file()), None)
    if weights is None:
        raise ExportError(f"{directory} has no weights: expected one of {', '.join(WEIGHT_FILES)}")
    modules = _read_json(directory / "modules.json") if (directory / "modules.json").is_file() else []
    pooling = _pooling(directory, modules)
    st_config = (
        _read_json(directory / "sentence_bert_config.json")
        if (directory / "sentence_bert_config.json").is_file()
        else {}
    )
    dim = int(config["hidden_size"] if architecture is Architecture.BERT else config["d_model"])
    return Checkpoint(
        directory=directory,
        architecture=architecture,
        config=config,
        dim=dim,
        max_length=_max_length(directory, config, st_config, architecture),
        pooling=pooling,
        normalize=any(str(m.get("type", "")).endswith("Normalize") for m in modules),
        lowercase=bool(st_config.get("do_lower_case", False)),
        weights=weights,
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ExportError(f"{path}: unreadable JSON ({e})") from e


def _architecture(config: dict[str, Any], path: Path) -> Architecture:
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    if model_type == "t5" or "T5EncoderModel" in architectures:
        return Architecture.T5_ENCODER  # only the encoder is exported, even from a full T5 checkpoint
    if model_type == "bert" or (
        model_type is None
        and {"hidden_size", "num_attention_heads", "intermediate_size", "type_vocab_size"} <= config.keys()
    ):
        # jina-embedding-t-en-v1 ships a TinyBERT config: no architectures, extra keys; it is a BertModel.
        return Architecture.BERT
    raise ExportError(
        f"{path}: unsupported architecture (model_type {model_type!r}, architectures {architectures}); "
        f"supported: {SUPPORTED}"
    )


def _pooling(directory: Path, modules: list[dict[str, Any]]) -> Pooling:
    unsupported = [
        m["type"] for m in modules if not str(m.get("type", "")).endswith(("Transformer", "Pooling", "Normalize"))
    ]
    if unsupported:
        raise ExportError(
            f"{directory / 'modules.json'}: modules {unsupported} are not supported; "
            "only Transformer -> Pooling -> optional Normalize"
        )
    pooling_dirs = [m.get("path", "") for m in modules if str(m.get("type", "")).endswith("Pooling")]
    config_path = directory / (pooling_dirs[0] if pooling_dirs else "1_Pooling") / "config.json"
    if not config_path.is_file():
        return Pooling.MEAN  # the Jina v1 default, and sentence-transformers' own
    pooling = _read_json(config_path)
    mode = pooling.get("pooling_mode")
    if mode is None:
        chosen = [
            key
            for key in (
                "cls_token",
                "mean_tokens",
                "max_tokens",
                "mean_sqrt_len_tokens",
                "weightedmean_tokens",
                "lasttoken",
            )
            if pooling.get(f"pooling_mode_{key}")
        ]
        if len(chosen) != 1:
            raise ExportError(f"{config_path}: expected exactly one pooling mode, found {chosen or 'none'}")
        mode = {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max"}.get(chosen[0], chosen[0])
    try:
        return Pooling(mode)
    except ValueError:
        raise ExportError(
            f"{config_path}: pooling mode {mode!r} is not supported; supported: {', '.join(p.value for p in Pooling)}"
        ) from None


def _max_length(directory: Path, config: dict[str, Any], st_config: dict[str, Any], architecture: Architecture) -> int:
    length = st_config.get("max_seq_length")
    if length is None and (directory / "tokenizer_config.json").is_file():
        declared = _read_json(directory / "tokenizer_config.json").get("model_max_length")
        # transformers writes a huge sentinel (1e30) when a tokenizer has no limit.
        length = declared if isinstance(declared, int) and declared < 100_000 else None
    length = int(length or 512)
    if architecture is Architecture.BERT:
        length = min(length, int(config.get("max_position_embeddings", length)))
    return length


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' informational warnings for a block, restoring the caller's level after."""
    import transformers

    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)


def load_torch_model(checkpoint: Checkpoint) -> Any:
    """The encoder as a PyTorch module in eval mode; refuses a checkpoint with missing weights.

    Pickled weights load with weights_only=True (transformers' default with torch >= 2.6), and
    no remote code is ever trusted: the built-in BertModel / T5EncoderModel classes are used.
    """
    import transformers

    if checkpoint.architecture is Architecture.BERT:
        config: Any = transformers.BertConfig.from_pretrained(checkpoint.directory)
        model_cls: Any = transformers.BertModel
        kwargs: dict[str, Any] = {"add_pooling_layer": False}
    else:
        config = transformers.T5Config.from_pretrained(checkpoint.directory)
        model_cls, kwargs = transformers.T5EncoderModel, {}
    try:
        # The "weights not used: pooler..." notice is expected (no pooler is needed); real gaps are checked below.
        with quiet_transformers():
            model, info = model_cls.from_pretrained(
                checkpoint.directory,
                config=config,
                output_loading_info=True,
                trust_remote_code=False,
                use_safetensors=checkpoint.weights.suffix == ".safetensors",
                **kwargs,
            )
    except (OSError, RuntimeError, ValueError, pickle.UnpicklingError) as e:
        # weights_only loading refuses pickles that would run code; say so rather than crash.
        raise ExportError(f"{checkpoint.weights}: cannot load weights ({type(e).__name__}: {e})") from e
    missing = [k for k in info["missing_keys"] if "pooler" not in k]
    if missing:
        raise ExportError(
            f"{checkpoint.weights}: {len(missing)} weights are missing (e.g. {missing[:3]}); "
            "the checkpoint is incomplete or not a BERT/T5 encoder"
        )
    return model.eval()
