"""Writing the artifact's `tokenizer.json`, converted from spiece.model / vocab.txt when needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jina_onnx.errors import ExportError


def load_hf_tokenizer(directory: Path) -> Any:
    """The checkpoint's fast tokenizer, exactly as sentence-transformers would load it."""
    import transformers

    from .checkpoint import quiet_transformers

    try:
        with quiet_transformers():  # T5's "legacy behaviour" notice is about the slow tokenizer, unused here
            tokenizer = transformers.AutoTokenizer.from_pretrained(directory, use_fast=True, trust_remote_code=False)
    except (OSError, ValueError, ImportError) as e:
        raise ExportError(f"{directory}: cannot load the tokenizer ({e})") from e
    if not tokenizer.is_fast:
        raise ExportError(f"{directory}: the tokenizer has no Rust (fast) version; it cannot be exported")
    if tokenizer.pad_token_id is None:
        raise ExportError(f"{directory}: the tokenizer defines no padding token")
    return tokenizer


def write_tokenizer(hf_tokenizer: Any, path: Path, lowercase: bool) -> int:
    """Save the Rust tokenizer with no truncation or padding baked in; returns its vocabulary size.

    The runtime sets truncation itself and pads per batch, so settings a checkpoint's
    tokenizer.json may carry (all-MiniLM-L6-v2 pads everything to 128) must not leak through.
    """
    from tokenizers import Tokenizer, normalizers

    tokenizer = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    tokenizer.no_truncation()
    tokenizer.no_padding()
    if lowercase:
        # sentence_bert_config.json's do_lower_case: sentence-transformers lowercases before tokenizing.
        steps = [normalizers.Lowercase()] + ([tokenizer.normalizer] if tokenizer.normalizer else [])
        tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.save(str(path))
    return int(tokenizer.get_vocab_size(with_added_tokens=True))
