"""One command for the side-by-side benchmark suite.

    python -m benchmarks run [--models t,s,b] [--device cpu|cuda] [--precisions fp32,int8] [--quick]
    python -m benchmarks publish benchmarks/results/<stem>.json  # that run's tables and plots in docs/performance.md
    python -m benchmarks host [--model minilm] [--cores 1,2]     # the host path alone and a stand-in device
    python -m benchmarks interop [--models t,s,b,l,minilm]      # the README's compatibility table
    python -m benchmarks memory [--models t,minilm] [--texts 1000]  # RSS of each runner on the same graph
    python -m benchmarks ceiling [--models t,s,b,l,minilm]     # GEMM ceiling per precision, each model's share

`run` writes benchmarks/results/<machine>-<date>[-quick].json, .md and three PNGs (see benchmarks/report.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

from . import runners
from .common import RESULTS, machine_facts, physical_cores
from .report import PERFORMANCE, plots, publish, render_markdown
from .runners import RUNTIMES
from .suite import FULL, QUICK, SMOKE, default_precisions, log, run

SIZES = ("t", "s", "b", "l", "minilm")  # minilm: the real all-MiniLM-L6-v2 as a throughput row too
PRECISIONS = ("fp32", "fp32-opt", "fp16", "int8", "bf16")


def machine_name(facts: dict[str, object], device: str) -> str:
    """A file-name-safe machine id: device, processor (or GPU) model and core count."""
    chip = str(facts.get("gpu") or facts["cpu"]) if device == "cuda" else str(facts["cpu"])
    chip = re.sub(r"\(r\)|\(tm\)|processor|\d+-core|cpu @.*", "", chip.lower())
    slug = re.sub(r"[^a-z0-9]+", "-", chip).strip("-")
    return f"{device}-{slug}-{facts['physical_cores']}c"


def gpu_facts() -> dict[str, object]:
    import subprocess

    try:
        out = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            .stdout.strip()
            .splitlines()[0]
        )
    except (OSError, subprocess.SubprocessError, IndexError):
        return {}
    name, memory, driver = (part.strip() for part in out.split(","))
    return {"gpu": name, "gpu_memory": memory, "driver": driver}


def parse_list(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    unknown = [item for item in items if item not in allowed]
    if unknown or not items:
        raise SystemExit(f"error: unknown {what} {', '.join(unknown) or repr(text)}; choose from {', '.join(allowed)}")
    return items


def check_device(device: str) -> None:
    import onnxruntime

    if device == "cuda" and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        raise SystemExit(
            "error: --device cuda needs onnxruntime-gpu with the CUDA provider; this onnxruntime offers "
            f"{onnxruntime.get_available_providers()}. Install the gpu extra (pip install "
            "'jina-onnx[gpu]') in place of onnxruntime, or use --device cpu."
        )


def command_run(args: argparse.Namespace) -> int:
    models = list(parse_list(args.models, SIZES, "model"))
    precisions = (
        parse_list(args.precisions, PRECISIONS, "precision") if args.precisions else default_precisions(args.device)
    )
    runtimes = parse_list(args.runtimes, RUNTIMES, "runtime")
    check_device(args.device)
    runners.RETRY_UNSUPPORTED = args.retry_unsupported
    settings = SMOKE if args.smoke else QUICK if args.quick else FULL
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    threads = physical_cores()
    facts = machine_facts() | (gpu_facts() if args.device == "cuda" else {})
    started = time.perf_counter()
    log(
        f"benchmark suite: models {','.join(models)}, device {args.device}, precisions {','.join(precisions)}, "
        f"{mode} mode, {threads} threads"
    )
    data = {
        "machine": facts,
        "machine_name": machine_name(facts, args.device),
        "device": args.device,
        "threads": threads,
        "mode": mode,
        "settings": settings.__dict__ | {"fixed_texts": {str(k): v for k, v in settings.fixed_texts.items()}},
        "command": "python -m benchmarks " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "versions": versions(),
    }
    out = Path(args.out) if args.out else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{data['machine_name']}-{facts['date']}" + ("" if mode == "full" else f"-{mode}")
    data["stem"] = stem
    partial = out / f"{stem}.partial.json"

    def keep(so_far: dict) -> None:  # hours of measurements survive a crash in a later model
        partial.write_text(json.dumps(data | so_far, indent=2) + "\n")

    data |= run(models, args.device, precisions, runtimes, threads, settings, checkpoint=keep)
    data["wall_s"] = time.perf_counter() - started
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    partial.unlink(missing_ok=True)
    pngs = plots(data, out, stem)
    (out / f"{stem}.md").write_text(render_markdown(data, heading="#"))
    log(
        f"done in {data['wall_s']:.0f} s: wrote {json_path}, {out / f'{stem}.md'} and {', '.join(p.name for p in pngs)}"
    )
    return 0


def versions() -> dict[str, str]:
    from jina_onnx.machine import package_versions

    return package_versions(
        (
            "onnxruntime",
            "onnxruntime-gpu",
            "torch",
            "transformers",
            "sentence-transformers",
            "optimum",
            "optimum-onnx",
            "fastembed",
            "tokenizers",
        )
    )


def command_host(args: argparse.Namespace) -> int:
    from . import host
    from .runners import artifact_dir

    cores = [int(c) for c in args.cores.split(",")] if args.cores else host_core_counts()
    available = len(os.sched_getaffinity(0))
    if not cores or min(cores) < 1 or max(cores) > available:
        raise SystemExit(f"error: --cores {args.cores!r} must be counts from 1 to the {available} CPUs available")
    facts = machine_facts()
    started = time.perf_counter()
    data = {
        "machine": facts,
        "date": facts["date"],
        "model": args.model,
        "versions": versions(),
        "command": "python -m benchmarks " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    }
    data |= host.measure(artifact_dir(args.model), args.texts, cores, args.load, log)
    data["wall_s"] = time.perf_counter() - started
    out = Path(args.out) if args.out else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    stem = f"host-{machine_name(facts, 'cpu')}-{facts['date']}"
    (out / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / f"{stem}.md").write_text(host.render(data))
    print(host.render(data))
    log(f"done in {data['wall_s']:.0f} s: wrote {out / stem}.json and .md")
    return 0


def host_core_counts() -> list[int]:
    """1, 2, 4, ... up to every CPU this process may use, and that count itself."""
    available = len(os.sched_getaffinity(0))
    counts = [c for c in (1, 2, 4, 8, 16, 32, 64) if c < available]
    return counts + [available]


def command_interop(args: argparse.Namespace) -> int:
    from . import interop
    from .common import prepared_artifact, prepared_minilm

    facts = machine_facts()
    rows = []
    for model in parse_list(args.models, SIZES, "model"):
        directory = prepared_minilm() if model == "minilm" else prepared_artifact(model)
        log(f"interop: {directory.name}")
        rows.append(interop.measure(directory) | {"size_mb": interop.size_mb(directory)})
        if args.screenshot and model == "minilm":
            interop.browser_page(directory, Path(args.screenshot))
    data = {"machine": facts, "date": facts["date"], "versions": interop.versions(), "rows": rows}
    stem = f"interop-{facts['date']}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(interop.render(rows))
    print(interop.render(rows))
    return 0


def command_memory(args: argparse.Namespace) -> int:
    from . import memory

    models = list(parse_list(args.models, SIZES, "model"))
    if args.texts < 1 or args.repeats < 1:
        raise SystemExit(f"error: --texts ({args.texts}) and --repeats ({args.repeats}) must be at least 1")
    facts = machine_facts()
    started = time.perf_counter()
    data = {
        "machine": facts,
        "date": facts["date"],
        "command": "python -m benchmarks " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "versions": versions(),
    }
    data |= memory.measure(models, args.texts, args.repeats, physical_cores(), log)
    data["wall_s"] = time.perf_counter() - started
    out = Path(args.out) if args.out else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    stem = f"memory-{facts['date']}"
    (out / f"{stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / f"{stem}.md").write_text(memory.render(data))
    print(memory.render(data))
    log(f"done in {data['wall_s']:.0f} s: wrote {out / stem}.json and .md")
    return 0


def command_ceiling(args: argparse.Namespace) -> int:
    from . import ceiling

    models = list(parse_list(args.models, SIZES, "model"))
    json_path, md_path = ceiling.command(models, args.threads or None)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


def command_readme(args: argparse.Namespace) -> int:
    json_path = Path(args.results).resolve()
    publish(json_path, PERFORMANCE)
    print(f"docs/performance.md now shows {json_path.name}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run the suite and write JSON, Markdown and PNG plots")
    run_parser.add_argument(
        "--models",
        default="t,s,b",
        help="comma-separated models from t,s,b,l,minilm (default t,s,b; minilm is the real "
        "all-MiniLM-L6-v2, which the quality table always uses)",
    )
    run_parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    run_parser.add_argument(
        "--precisions",
        default="",
        help="jina-onnx variants to run (default fp32,int8 on cpu, plus bf16 on OpenVINO where "
        "it is installed and the CPU has bf16 units; fp32,fp16 on cuda)",
    )
    run_parser.add_argument(
        "--runtimes", default=",".join(RUNTIMES), help=f"runners to include (default all: {','.join(RUNTIMES)})"
    )
    run_parser.add_argument(
        "--quick", action="store_true", help="fewer texts and rounds: t and s in under 5 minutes on 2 CPU cores"
    )
    run_parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tests: minimal work
    run_parser.add_argument("--out", default="", help="write results here instead of benchmarks/results/")
    run_parser.add_argument(
        "--retry-unsupported",
        action="store_true",
        help="try again baselines an earlier run with the same package versions found unsupported",
    )
    run_parser.set_defaults(handler=command_run)
    readme_parser = commands.add_parser(
        "publish", aliases=["readme"], help="show a results JSON in docs/performance.md"
    )
    readme_parser.add_argument("results", help="a benchmarks/results/*.json written by `run`")
    readme_parser.set_defaults(handler=command_readme)
    host_parser = commands.add_parser("host", help="the host path alone at 1..N cores, and a stand-in device")
    host_parser.add_argument("--model", choices=SIZES, default="minilm", help="whose tokenizer (default minilm)")
    host_parser.add_argument("--texts", type=int, default=8192, help="texts per workload (default 8192)")
    host_parser.add_argument("--cores", default="", help="core counts, e.g. 1,2 (default 1, 2, 4, ... all)")
    host_parser.add_argument(
        "--load",
        type=float,
        default=0.8,
        help="the stand-in device's speed as a share of the host capacity (default 0.8)",
    )
    host_parser.add_argument("--out", default="", help="write results here instead of benchmarks/results/")
    host_parser.set_defaults(handler=command_host)
    interop_parser = commands.add_parser("interop", help="other runtimes on our export directory: the README table")
    interop_parser.add_argument("--models", default="t,s,b,l,minilm", help="comma-separated from t,s,b,l,minilm")
    interop_parser.add_argument("--screenshot", default="", help="save the browser page for MiniLM as this PNG")
    interop_parser.set_defaults(handler=command_interop)
    memory_parser = commands.add_parser(
        "memory", help="RSS and start-up of jina-onnx, fastembed and ST ONNX on the same graph, fresh processes"
    )
    memory_parser.add_argument("--models", default="t,minilm", help="comma-separated from t,s,b,l,minilm")
    memory_parser.add_argument("--texts", type=int, default=1000, help="STS-dev sentences to embed (default 1000)")
    memory_parser.add_argument("--repeats", type=int, default=3, help="fresh processes per row (default 3)")
    memory_parser.add_argument("--out", default="", help="write results here instead of benchmarks/results/")
    memory_parser.set_defaults(handler=command_memory)
    ceiling_parser = commands.add_parser(
        "ceiling", help="this CPU's GEMM throughput per precision and each model's share of it (32 x 128 tokens)"
    )
    ceiling_parser.add_argument("--models", default="t,s,b,l,minilm", help="comma-separated from t,s,b,l,minilm")
    ceiling_parser.add_argument("--threads", type=int, default=0, help="threads (default: the physical cores)")
    ceiling_parser.set_defaults(handler=command_ceiling)
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
