"""Tracing the encoder plus its pooling into one ONNX graph."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from jina_onnx.manifest import Pooling

OUTPUTS = ("last_hidden_state", "sentence_embedding")  # token-level first: see pooled_module
OPSET = 17  # traced BERT and T5 encoders within 1e-6 of torch here (docs/architecture.md, pitfall 5)


def pooled_module(encoder: Any, pooling: Pooling, takes_token_types: bool) -> Any:
    """Wrap an encoder so one call returns (last_hidden_state, sentence_embedding).

    Pooling inside the graph means only (batch, dim) has to leave the device at run time. The token-level
    output comes first and under the name Hugging Face consumers expect (sentence-transformers' ONNX backend
    reads `last_hidden_state`, fastembed the first output, transformers.js either), so the same file serves
    them with pooling left to them (docs/interop.md).
    """
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            kwargs = {"token_type_ids": token_type_ids} if takes_token_types else {}
            tokens = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs)[0]  # (b, s, d)
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)  # (b, s, 1)
            if pooling is Pooling.MEAN:
                # Same arithmetic as sentence-transformers' Pooling, clamp included.
                pooled = (tokens * mask).sum(1) / torch.clamp(mask.sum(1), min=1e-9)
            elif pooling is Pooling.CLS:
                pooled = tokens[:, 0]
            else:
                pooled = torch.where(mask > 0, tokens, torch.full_like(tokens, -1e9)).max(1).values
            return tokens, pooled

    return Pooled().eval()


def export_onnx(module: Any, input_names: list[str], path: Path) -> None:
    """torch.onnx.export with dynamic batch and sequence axes (TorchScript exporter, opset 17)."""
    import torch

    # Two rows of different lengths so the trace sees real padding in the mask.
    input_ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12], [5, 6, 7, 0, 0, 0, 0, 0]], dtype=torch.long)
    attention_mask = (input_ids != 0).long()
    args = [input_ids, attention_mask] + ([torch.zeros_like(input_ids)] if "token_type_ids" in input_names else [])
    axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    axes["sentence_embedding"] = {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        # transformers' mask helpers trigger TracerWarnings about constants that are constant here.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # The TorchScript exporter is chosen on purpose (measured exact for BERT and T5 here); its
        # deprecation notice would only alarm users.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            tuple(args),
            str(path),
            input_names=input_names,
            output_names=list(OUTPUTS),
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
