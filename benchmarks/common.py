"""Shared pieces of the benchmark scripts: machine facts, fair timing, prepared artifacts."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
WORK = Path(os.environ.get("JINA_ONNX_BENCH_HOME", Path.home() / ".cache" / "jina-onnx-bench"))


def physical_cores() -> int:
    """The runtime's own default thread count (imported late: cold-start children must not load jina_onnx)."""
    from jina_onnx.machine import physical_cores as cores

    return cores()


def machine_facts() -> dict[str, object]:
    import onnxruntime

    flags = ""
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1]
    except OSError:
        pass
    interesting = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags.split()]
    from jina_onnx.machine import cpu_class

    return {
        "cpu": model or platform.machine(),
        "cpu_class": cpu_class().name,
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical_cores(),
        "cpu_flags": interesting,
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "providers": onnxruntime.get_available_providers(),
        "date": dt.date.today().isoformat(),
    }


def prepared_artifact(size: str, precisions: tuple[str, ...] = ("fp32", "fp16", "int8")) -> Path:
    """The synthetic checkpoint of a model size exported once into WORK, reused on later runs."""
    from jina_onnx.manifest import SCHEMA_VERSION, load_manifest

    out = WORK / "artifacts" / f"jina-embedding-{size}-en-v1"
    if (out / "manifest.json").is_file():
        manifest = load_manifest(out)
        if manifest.schema_version >= SCHEMA_VERSION and all(
            p in manifest.variants or p in manifest.rejected for p in (*precisions, "fp32-opt")
        ):
            return out
    from jina_onnx.export import export_model
    from jina_onnx.export.synthetic import write_checkpoint

    checkpoint = WORK / "checkpoints" / size
    if not (checkpoint / "config.json").is_file():
        write_checkpoint(size, checkpoint)
    return export_model(
        checkpoint, out, name=f"jina-embedding-{size}-en-v1", precisions=[*precisions, "fp32-opt"], overwrite=True
    )


def prepared_minilm(precisions: tuple[str, ...] = ("fp32", "fp16", "int8")) -> Path:
    from jina_onnx.manifest import SCHEMA_VERSION, load_manifest

    out = WORK / "artifacts" / "all-MiniLM-L6-v2"
    if (out / "manifest.json").is_file() and load_manifest(out).schema_version >= SCHEMA_VERSION:
        return out  # an older layout is exported again: the interop table needs the Hugging Face files
    from jina_onnx.export import export_model
    from jina_onnx.export.synthetic import minilm_checkpoint

    return export_model(
        minilm_checkpoint(), out, name="all-MiniLM-L6-v2", precisions=[*precisions, "fp32-opt"], overwrite=True
    )


def write_results(stem: str, data: dict[str, object], markdown: str) -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS / f"{stem}.json"
    md_path = RESULTS / f"{stem}.md"
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    md_path.write_text(markdown)
    return json_path, md_path
