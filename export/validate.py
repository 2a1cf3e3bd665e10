"""PyTorch embeddings of the probe set: the reference every exported variant is compared with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jina_onnx.registry import Architecture


def torch_embeddings(
    module: Any, hf_tokenizer: Any, texts: list[str], max_length: int, lowercase: bool, input_names: list[str]
) -> np.ndarray:
    """Pooled fp32 embeddings from PyTorch, tokenized the way sentence-transformers does."""
    import torch

    if lowercase:
        texts = [t.lower() for t in texts]
    batch = hf_tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    args = [batch["input_ids"], batch["attention_mask"]]
    if "token_type_ids" in input_names:
        args.append(torch.zeros_like(batch["input_ids"]))
    with torch.no_grad():
        _, pooled = module(*args)  # (last_hidden_state, sentence_embedding)
    return pooled.float().numpy()  # (n, dim)


def checkpoint_embeddings(directory: Path, texts: list[str]) -> np.ndarray:
    """PyTorch's pooled fp32 embeddings of `texts` from a local checkpoint directory, as the export computes
    them: the reference `jina-onnx verify --against` gates any ONNX directory with, ours or another tool's."""
    from .checkpoint import load_torch_model, read_checkpoint
    from .tokenizer import load_hf_tokenizer
    from .trace import pooled_module

    checkpoint = read_checkpoint(directory)
    input_names = ["input_ids", "attention_mask"] + (
        ["token_type_ids"] if checkpoint.architecture is Architecture.BERT else []
    )
    module = pooled_module(load_torch_model(checkpoint), checkpoint.pooling, "token_type_ids" in input_names)
    return torch_embeddings(
        module, load_hf_tokenizer(directory), texts, checkpoint.max_length, checkpoint.lowercase, input_names
    )
