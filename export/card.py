"""The artifact's model card: README.md with the Hub's metadata, so an upload is a complete Hub repository.

It is not in the manifest's checksums: users edit model cards (a description, a citation) and an edited card
must not fail `verify` or a load."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from jina_onnx.manifest import Manifest, Precision

CARD_FILE = "README.md"
TAGS = ["sentence-transformers", "onnx", "feature-extraction", "sentence-similarity", "jina-onnx"]


def write_card(directory: Path, manifest: Manifest) -> None:
    """Write README.md for the artifact in `directory` from its manifest."""
    source = manifest.source
    hub_id = source.location if source.kind == "hub" else None
    data = ModelCardData(
        library_name="sentence-transformers",
        tags=TAGS,
        pipeline_tag="sentence-similarity",
        base_model=hub_id,
        # Jina's v1 checkpoints are Apache-2.0; any other source's license is not known here, so none is claimed.
        license="apache-2.0" if hub_id and hub_id.startswith("jinaai/") else None,
    )
    repo = "YOUR-NAME/" + manifest.name
    graphs = "\n".join(
        f"| {p.value} | `{v.file}` | max abs diff {v.parity.max_abs_diff:.2e}, min cosine {v.parity.min_cosine:.6f} |"
        for p, v in sorted(manifest.variants.items(), key=lambda item: item[0].value)
    )
    rejected = "".join(f"\n- {name} not written: {why}" for name, why in sorted(manifest.rejected.items()))
    # What other tools should load: the plain graph where it was written, else the CPU one.
    preferred = ("fp32", "fp32-opt", "int8", "fp16")
    first = next(manifest.variants[p].file for p in map(Precision, preferred) if p in manifest.variants)
    content = f"""---
{data.to_yaml()}
---

# {manifest.name} (ONNX)

ONNX export of `{source.location}` by [jina-onnx](https://github.com/jina-ai/jina-onnx): {manifest.dim}-dimensional
sentence embeddings, {manifest.pooling.value} pooling, up to {manifest.max_length} tokens.

## Gate results (vs PyTorch fp32, recorded in manifest.json)

| precision | file | parity |
|---|---|---|
{graphs}
{rejected}

## Use

jina-onnx (no PyTorch):

```python
from jina_onnx import build_model
model = build_model("{repo}")  # the Hub id (or this directory): fetches only the graph it runs
vectors = model.encode(["first text", "second text"])  # precision="auto" picks among the graphs above
```

sentence-transformers:

```python
from sentence_transformers import SentenceTransformer
model = SentenceTransformer("{repo}", backend="onnx", model_kwargs={{"file_name": "{first}"}})
```

fastembed:

```python
from fastembed import TextEmbedding
from fastembed.common.model_description import ModelSource, PoolingType
TextEmbedding.add_custom_model(
    model="{repo}", pooling=PoolingType.{manifest.pooling.name}, normalization={manifest.normalize},
    sources=ModelSource(hf="{repo}"), dim={manifest.dim}, model_file="{first}",
)
```

transformers.js (a BERT model as below; for a T5 encoder, `pipeline()` asks for a decoder: build the same
pipeline on its encoder-only class, as jina-onnx's examples/browser/feature-extractor.js does):

```js
import {{ pipeline }} from "@huggingface/transformers";
const extractor = await pipeline("feature-extraction", "{repo}", {{ dtype: "fp32" }});
const vectors = await extractor(["first text"], {{ pooling: "{manifest.pooling.value}", normalize: {str(manifest.normalize).lower()} }});
```
"""
    ModelCard(content).save(directory / CARD_FILE)
