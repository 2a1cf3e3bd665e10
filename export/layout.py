"""The Hugging Face side of an export directory: the files other runtimes read beside our ONNX graphs.

The directory `export_model` writes is also a model repository in the conventional layout
(docs/interop.md): the checkpoint's `config.json`, the tokenizer files, the sentence-transformers module
files, and the graphs under `onnx/` with the names transformers.js and sentence-transformers look for
(`onnx/model.onnx`, `onnx/model_quantized.onnx`, `onnx/model_fp16.onnx`). Our `tokenizer.json` is the one
file both sides read: no truncation or padding baked in, so every consumer pads and truncates as it is
configured here, to the model's maximum length.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from jina_onnx.manifest import Pooling

from .checkpoint import Checkpoint

TOKENIZER_CONFIGS = ("tokenizer_config.json", "special_tokens_map.json")
POOLING_DIR = "1_Pooling"
CALL_DEFAULTS = ("max_length", "stride", "truncation_strategy", "pad_to_multiple_of", "padding_strategy")


def write_hub_files(checkpoint: Checkpoint, hf_tokenizer: Any, directory: Path) -> list[str]:
    """Write `config.json`, the tokenizer configs and the sentence-transformers files; returns their names.

    `tokenizer.json` itself is written by `tokenizer.write_tokenizer` (the runtime's copy, shared).
    """
    shutil.copyfile(checkpoint.directory / "config.json", directory / "config.json")
    with tempfile.TemporaryDirectory() as scratch:
        # transformers' own save writes the configs every Hugging Face tokenizer loader reads.
        hf_tokenizer.save_pretrained(scratch, legacy_format=False)
        for name in TOKENIZER_CONFIGS:
            data = json.loads((Path(scratch) / name).read_text(encoding="utf-8"))
            if name == "tokenizer_config.json":
                # transformers.js and fastembed truncate to model_max_length: the limit sentence-transformers
                # and jina-onnx use (MiniLM's checkpoint says 512 but ST, and so we, truncate at 256).
                data["model_max_length"] = checkpoint.max_length
                # Call defaults a checkpoint's tokenizer.json padding/truncation left behind (MiniLM: pad and
                # truncate at 128); fastembed truncates at the smaller of max_length and model_max_length.
                for key in CALL_DEFAULTS:
                    data.pop(key, None)
            _write_json(directory / name, data)
    _write_json(
        directory / "sentence_bert_config.json",
        {"max_seq_length": checkpoint.max_length, "do_lower_case": checkpoint.lowercase},
    )
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": POOLING_DIR, "type": "sentence_transformers.models.Pooling"},
    ]
    if checkpoint.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    _write_json(directory / "modules.json", modules)
    (directory / POOLING_DIR).mkdir(exist_ok=True)
    _write_json(directory / POOLING_DIR / "config.json", pooling_config(checkpoint.dim, checkpoint.pooling))
    return [
        "config.json",
        *TOKENIZER_CONFIGS,
        "sentence_bert_config.json",
        "modules.json",
        f"{POOLING_DIR}/config.json",
    ]


def pooling_config(dim: int, pooling: Pooling) -> dict[str, Any]:
    """sentence-transformers' `Pooling` config for one mode (the keys every version of it reads)."""
    return {
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": pooling is Pooling.CLS,
        "pooling_mode_mean_tokens": pooling is Pooling.MEAN,
        "pooling_mode_max_tokens": pooling is Pooling.MAX,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False,
        "include_prompt": True,
    }


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
