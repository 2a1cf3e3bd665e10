#!/usr/bin/env bash
# The CUDA measurements on a lent GPU machine, after `bash .gpu/install.sh` (docs/gpu.md):
#   1. the host path on this machine's cores (python -m benchmarks host: 1, 2, 4, ... cores, and a stand-in
#      device), so its scaling curve is on record before any GPU number;
#   2. the full CUDA suite (jina-onnx fp32/fp16 vs torch through sentence-transformers; 2,048 texts of 128
#      tokens and all 3,000 STS sentences at batch 256), one model after another.
# Results go under $OUT as they come, so a killed run still returns every finished part (host/*.json,
# suite/*.partial.json).
#   OUT=/tmp/out MODELS=t SUITE_TIMEOUT=120 SUITE_ARGS=--quick bash scripts/gpu_check.sh   # smaller
set -u
OUT="${OUT:?set OUT to the results folder}"
PY="${PY:-python3}"
export PYTHONPATH="${JO_PATH:-/tmp/jo:/tmp/site}" PYTHONUNBUFFERED=1
mkdir -p "$OUT/suite" "$OUT/host"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
  "$PY" -c "import onnxruntime as o, jina_onnx; print(o.__version__, o.get_available_providers(), jina_onnx.__file__)"
  nproc
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
timeout "${HOST_TIMEOUT:-240}" "$PY" -m benchmarks host --model "${HOST_MODEL:-minilm}" ${HOST_ARGS:-} \
  --out "$OUT/host" > "$OUT/host.log" 2>&1
echo "host exit $?" >> "$OUT/host.log"
tail -25 "$OUT/host.log"
timeout "${SUITE_TIMEOUT:-420}" "$PY" -m benchmarks run --device "${DEVICE:-cuda}" --models "${MODELS:-t,s,b,l}" \
  --precisions fp32,fp16 --runtimes torch,jina-onnx ${SUITE_ARGS:-} --out "$OUT/suite" \
  > "$OUT/suite.log" 2>&1
echo "suite exit $?" >> "$OUT/suite.log"
tail -40 "$OUT/suite.log"
ls "$OUT/suite" "$OUT/host"
