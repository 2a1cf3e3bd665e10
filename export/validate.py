"""PyTorch embeddings of the probe set: the reference every exported variant is compared with."""

from __future__ import annotations

from typing import Any

import numpy as np


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
        pooled, _ = module(*args)
    return pooled.float().numpy()  # (n, dim)
