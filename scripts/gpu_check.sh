#!/usr/bin/env bash
# The CUDA measurements of the published code on a lent GPU machine, after `bash .gpu/install.sh` (see
# ../shared/tools/gpu/GPU.md): the quick suite (jina-onnx fp32/fp16 vs torch through sentence-transformers)
# for t, s, b and l, one model after another. Results go under $OUT as they come, so a killed run still
# returns every finished model (suite/*.partial.json).
#   OUT=/tmp/out MODELS=t SUITE_TIMEOUT=120 bash scripts/gpu_check.sh   # the same check, smaller
set -u
OUT="${OUT:?set OUT to the results folder}"
PY="${PY:-python3}"
export PYTHONPATH="${JO_PATH:-/tmp/jo:/tmp/site}" PYTHONUNBUFFERED=1
mkdir -p "$OUT/suite"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
  "$PY" -c "import onnxruntime as o, jina_onnx; print(o.__version__, o.get_available_providers(), jina_onnx.__file__)"
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
timeout "${SUITE_TIMEOUT:-420}" "$PY" -m benchmarks run --device "${DEVICE:-cuda}" --models "${MODELS:-t,s,b,l}" \
  --precisions fp32,fp16 --runtimes torch,jina-onnx --quick ${SUITE_ARGS:-} --out "$OUT/suite" \
  > "$OUT/suite.log" 2>&1
echo "suite exit $?" >> "$OUT/suite.log"
tail -40 "$OUT/suite.log"
ls "$OUT/suite"
