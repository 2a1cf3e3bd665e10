#!/usr/bin/env bash
# `jina-onnx serve` on a many-core host: t int8 on the CPU with --workers 1, 2, 4 and 8 against offline
# `encode`, wrk as the load generator (docs/performance.md#the-server). Made for the lent GPU machine
# (16 cores, no package index), in two steps:
#   here:   bash scripts/serve_scaling.sh stage        # writes .serve-scaling/ (git-ignored): the package,
#                                                      # the benchmark, t's int8 graph, wheels, wrk (~45 MB)
#   there:  bash .serve-scaling/run.sh                 # with OUT set; results under $OUT
# The device tool carries .serve-scaling (its `carry`); the image's own onnxruntime and tokenizers are used.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = stage ] || { echo "usage: bash scripts/serve_scaling.sh stage" >&2; exit 1; }
G=.serve-scaling
exclude=$(git rev-parse --git-path info/exclude) && mkdir -p "$(dirname "$exclude")"
grep -qx "/$G/" "$exclude" 2>/dev/null || echo "/$G/" >> "$exclude"
rm -rf "$G" && mkdir -p "$G/jo" "$G/benchmarks/results" "$G/data" "$G/whl" "$G/bin" "$G/lib"
cp -r runtime "$G/jo/jina_onnx" && find "$G/jo" -name __pycache__ -prune -exec rm -rf {} +
cp benchmarks/*.py benchmarks/*.lua "$G/benchmarks/" && cp data/sts-dev.tsv "$G/data/"
artifact=$(.venv/bin/python -c "from benchmarks.common import prepared_artifact; print(prepared_artifact('t'))")
mkdir -p "$G/bench/artifacts/jina-embedding-t-en-v1/onnx"
(cd "$artifact" && cp -r $(ls | grep -v '^onnx$') "$OLDPWD/$G/bench/artifacts/jina-embedding-t-en-v1/" \
  && cp onnx/model_quantized.onnx "$OLDPWD/$G/bench/artifacts/jina-embedding-t-en-v1/onnx/")
command -v wrk >/dev/null || apt-get install -y wrk >/dev/null
cp "$(command -v wrk)" "$G/bin/" && cp "$(ldd "$(command -v wrk)" | awk '/luajit/ {print $3}')" "$G/lib/"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d "$G/whl" $(grep -E "^(uvicorn|starlette|httptools|orjson)==" requirements/ci.txt)
cat > "$G/run.sh" <<'RUN'
#!/usr/bin/env bash
set -u
cd "$(dirname "$0")"
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site whl/*.whl || exit 1
export PYTHONPATH="$PWD/jo:/tmp/site:$PWD" PYTHONUNBUFFERED=1 LD_LIBRARY_PATH="$PWD/lib" PATH="$PWD/bin:$PATH"
export JINA_ONNX_BENCH_HOME="$PWD/bench" JINA_ONNX_HOME=/tmp/jhome
{ nproc; lscpu | grep -E "Model name|Thread|Core|Socket"
  python3 -c "import onnxruntime, tokenizers, jina_onnx; from jina_onnx.machine import physical_cores; print(onnxruntime.__version__, tokenizers.__version__, physical_cores())"
} 2>&1 | tee "$OUT/machine.txt"
timeout "${SERVE_TIMEOUT:-450}" python3 -m benchmarks.serve --models t --texts-per-request "${TPR:-1,16}" \
  --concurrency "${CONC:-1,64,256}" --workers "${WORKERS:-1,2,4,8}" --seconds "${SECONDS_EACH:-6}" 2>&1 | tee "$OUT/serve.log"
cp benchmarks/results/serve-* "$OUT/" 2>/dev/null; ls "$OUT"
RUN
chmod +x "$G/run.sh"
echo "staged $(du -sh "$G" | cut -f1) in $G: carry it and run: OUT=\$OUT bash $G/run.sh (timeout_s 560)"
