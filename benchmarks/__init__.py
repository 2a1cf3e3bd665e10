"""Benchmark scripts for jina-onnx. The package never imports these; run them with `python -m benchmarks...`."""
