"""The `jina-onnx` command line: a thin layer over the library.

`main(argv)` returns the exit code, so tests call it in-process. The export stage (and with it
torch) is imported only by the `export` command.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import JinaOnnxError

EXIT_CODES = """exit codes:
  0    success
  1    a user error: bad input, a missing model or file, a failed check (one line on stderr says what to do)
  2    a wrong option or argument (the usage line says which)
  3    the Hugging Face Hub could not be reached (export)
  4    an internal error: a bug in jina-onnx (please report it; JINA_ONNX_DEBUG=1 prints the traceback)
  130  interrupted (Ctrl-C)"""

SEED_A = "how is the weather today"
SEED_B = "What is the current weather like today?"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns an exit code of EXIT_CODES (0 on success, 1 on a user error, ...)."""
    parser = _parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to run the same command again (embed --ray)
    _configure_logging(args.quiet)
    try:
        return int(args.run(args) or 0)
    except JinaOnnxError as e:
        print(f"jina-onnx: error: {cli_words(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("jina-onnx: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`jina-onnx encode ... | head -1`): that is how pipes end, not an error.
        # Point stdout at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        # The file system said no (a missing folder, no permission, a full disk): the path and the reason are
        # the whole story for a user.
        where = f"{e.filename}: " if e.filename else ""
        print(f"jina-onnx: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except Exception as e:
        # No user input should get here (tests/test_no_traceback.py tries to); if something does, it is our
        # bug: one line that says so, and the traceback for the report when asked for.
        if os.environ.get("JINA_ONNX_DEBUG"):
            raise
        print(
            f"jina-onnx: internal error: {type(e).__name__}: {e} (a bug in jina-onnx: please report it with the "
            "command; JINA_ONNX_DEBUG=1 prints the traceback)",
            file=sys.stderr,
        )
        return 4


# The library's keyword arguments that are CLI options: a message written for Python (`pass truncation='right'`)
# is shown on the CLI in the option's words (`pass --truncation right`).
_OPTIONS = (
    "threads|batch_size|device|precision|backend|truncation|normalize|output_precision|overwrite|on_bad_row"
    "|text_column|id_column|workers|cpus_per_worker|stall_timeout"
)
_KEYWORD = re.compile(rf"(?<![\w-])({_OPTIONS})=('([^']*)'|[\w.+-]+)")


def cli_words(message: str) -> str:
    """A library message in the CLI's words: keyword arguments become the options that set them.

    Example:
        >>> cli_words("data[0] is long; pass truncation='right' (or threads=None, overwrite=True, normalize=False)")
        'text 1 is long; pass --truncation right (or no --threads, --overwrite, --no-normalize)'
    """

    def option(match: re.Match[str]) -> str:
        flag = "--" + match.group(1).replace("_", "-")
        value = match.group(3) if match.group(3) is not None else match.group(2)
        if value == "True":
            return flag
        if value == "False":
            return f"--no-{flag[2:]}"
        if value == "None":
            return f"no {flag}"
        return f"{flag} {value}"

    # data[i]: `encode(data=...)`'s i-th text; on the CLI, the i-th text given (counted from 1).
    message = re.sub(r"\bdata\[(\d+)\]", lambda m: f"text {int(m.group(1)) + 1}", message)
    return _KEYWORD.sub(option, message)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now, so a replaced stderr (tests, daemons) never breaks logging."""

    @property
    def stream(self):  # type: ignore[no-untyped-def]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # type: ignore[no-untyped-def]
        pass


def _no_progress(record: logging.LogRecord) -> bool:
    return not getattr(record, "progress", False)


def _configure_logging(quiet: bool) -> None:
    # Only jina-onnx's own progress lines; the libraries it drives (ORT's optimizer and quantizer
    # log every fused node at INFO) stay at their WARNING default.
    logger = logging.getLogger("jina_onnx")
    handler = next((h for h in logger.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    # -q: results and errors only; a progress note (`extra={"progress": True}`: a first load measuring) is
    # a warning so that library users see it, but no error.
    handler.filters = [_no_progress] if quiet else []
    if quiet:  # huggingface_hub's download bars (a model by Hub id); read when it is imported, after this
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jina-onnx",
        description="Jina Embeddings v1 on ONNX Runtime, without PyTorch.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only results and errors")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    models = commands.add_parser("models", help="list the known models")
    models.set_defaults(run=_models)

    export = commands.add_parser("export", help="export a checkpoint to ONNX (needs the `export` extra)")
    export.add_argument("source", help="model name, hub id (jinaai/...) or local checkpoint directory")
    export.add_argument("--out", help="artifact directory (default: $JINA_ONNX_HOME/<name>)")
    export.add_argument("--name", help="model name recorded in the artifact")
    export.add_argument("--revision", help="hub branch, tag or commit")
    export.add_argument(
        "--precision",
        default=None,
        help="comma-separated, exactly the graphs written, each where it passes its gate: fp32, fp32-opt (CPU "
        "fusions), fp16 (CUDA), int8 (CPU); default fp32,fp16,int8 plus fp32-opt (--no-optimize: without it)",
    )
    export.add_argument(
        "--optimize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="derive fp16/int8 from fp32-opt, ONNX Runtime's CPU fusions (default); naming fp32-opt implies it",
    )
    export.add_argument("--overwrite", action="store_true", help="replace an existing artifact")
    export.set_defaults(run=_export)

    encode = commands.add_parser("encode", help="embed texts (arguments, or one per line on stdin)")
    _model_options(encode)
    encode.add_argument("texts", nargs="*", help="texts to embed; none: read stdin, one text per line")
    encode.add_argument("--output", "-o", help="write a .npy file instead of JSON lines on stdout")
    encode.add_argument("--batch-size", type=int, default=None, help="texts per call (default: 32 CPU, 256 CUDA)")
    encode.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="L2-normalize (default: as the model declares)",
    )
    _precision_option(encode)
    encode.set_defaults(run=_encode)

    tokens = commands.add_parser(
        "tokens", help="count the tokens each text is embedded with (arguments, or one per line on stdin)"
    )
    _model_options(tokens)
    tokens.add_argument("texts", nargs="*", help="texts to count; none: read stdin, one text per line")
    tokens.add_argument("--total", action="store_true", help="print only the sum")
    tokens.set_defaults(run=_tokens)

    verify = commands.add_parser("verify", help="check an artifact end to end (checksums, load, probe parity)")
    verify.add_argument("directory", help="artifact directory, or a model name in $JINA_ONNX_HOME")
    verify.add_argument(
        "--against",
        metavar="CHECKPOINT",
        help="compare with PyTorch run now on this local checkpoint (needs the export extra); "
        "gates a third-party ONNX export, which has no manifest",
    )
    verify.set_defaults(run=_verify)

    embed = commands.add_parser(
        "embed",
        help="embed a corpus file to file: Parquet, JSON Lines or text in, Parquet "
        "out; resumable; --ray runs it on Ray Data",
        description="Embed every text of INPUT "
        "(a file, directory or glob of .parquet/.jsonl/.txt) into OUTPUT (one Parquet file per "
        "input file, then _manifest.json). A rerun skips finished files.",
    )
    embed.add_argument("input", help="file, directory or glob (quote it) of .parquet, .jsonl or .txt files")
    embed.add_argument("output", help="output directory")
    embed.add_argument("--model", "-m", default="jina-embedding-t-en-v1", help="model name or artifact directory")
    embed.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    embed.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp32-opt", "fp16", "int8", "bf16"])
    embed.add_argument("--threads", type=int, default=None, help="CPU threads (per worker with --ray)")
    embed.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "onnxruntime", "openvino"],
        help="CPU engine (auto: OpenVINO where installed and measured faster here, else ONNX Runtime; --ray: ONNX Runtime)",
    )
    embed.add_argument("--batch-size", type=int, default=None, help="texts per ONNX Runtime call (device default)")
    embed.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="L2-normalize (default: as the model declares)",
    )
    embed.add_argument("--text-column", default="text", help="the text field of Parquet / JSON Lines rows (text)")
    embed.add_argument("--id-column", default=None, help="an id field to keep (default: FILE:ROW, 0-based)")
    embed.add_argument("--keep-text", action="store_true", help="also write the text next to its embedding")
    embed.add_argument(
        "--on-bad-row",
        default="stop",
        choices=["stop", "skip"],
        help="a null, non-string or non-UTF-8 row stops the job (stop) or goes to _rejected.jsonl",
    )
    embed.add_argument("--overwrite", action="store_true", help="redo finished shards instead of skipping them")
    _truncation_option(embed)
    _precision_option(embed)
    _ray_option(embed, "run on Ray Data: no ADDRESS starts a local Ray, 'auto' joins the running cluster")
    embed.add_argument("--workers", type=int, default=1, help="with --ray: embedding actors (model copies)")
    embed.add_argument("--cpus-per-worker", type=float, default=1.0, help="with --ray: CPUs Ray reserves per actor")
    embed.add_argument(
        "--stall-timeout",
        type=float,
        default=600.0,
        help="with --ray: stop with an error after this many seconds without a row written (600)",
    )
    embed.set_defaults(run=_embed)

    serve = commands.add_parser(
        "serve",
        help="OpenAI-compatible embeddings server (needs the `serve` extra)",
        description="Serve embeddings over HTTP, batching concurrent requests: POST /v1/embeddings (OpenAI), "
        "POST /embed, POST / and POST /tokenize, GET /info (Hugging Face TEI), GET /v1/models, GET /health and "
        "GET /metrics (Prometheus). SIGTERM finishes requests in flight, then exits.",
    )
    serve.add_argument(
        "--model",
        "-m",
        action="append",
        help="model name or artifact directory; repeat to serve several (default: jina-embedding-t-en-v1)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    serve.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp32-opt", "fp16", "int8", "bf16"])
    serve.add_argument("--threads", type=int, default=None, help="CPU threads (default: the physical cores)")
    serve.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "onnxruntime", "openvino"],
        help="CPU engine (auto: OpenVINO where installed and measured faster here, else ONNX Runtime)",
    )
    serve.add_argument(
        "--optimize-for",
        default="latency",
        choices=["latency", "throughput"],
        help="what 'auto' choices are measured on: one short text per call (latency, default) or "
        "batches of 32 (throughput)",
    )
    serve.add_argument(
        "--max-batch-tokens",
        type=int,
        default=None,
        help="tokens per inference batch (default: 8192 on CPU, 65536 on CUDA)",
    )
    serve.add_argument(
        "--max-batch-wait-ms",
        type=float,
        default=0.0,
        help="how long an idle device waits for a batch to fill (default 0: run at once)",
    )
    serve.add_argument("--max-queue", type=int, default=256, help="waiting requests per model before 429 (256)")
    serve.add_argument(
        "--batches-in-flight",
        type=int,
        default=None,
        help="batches of one model run at once (default: 2 on a CPU with ONNX Runtime, each on half the cores; else 1)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port, each with its own model copy and 1/N of the cores (default 1; "
        "more pays for small models on many cores: docs/performance.md#the-server)",
    )
    serve.add_argument("--max-inputs-per-request", type=int, default=2048, help="texts per request (2048, as OpenAI)")
    serve.add_argument("--max-request-bytes", type=int, default=8 << 20, help="request body size (8 MiB)")
    serve.add_argument(
        "--api-key",
        default=None,
        help="require 'Authorization: Bearer KEY' (default: "
        "$JINA_ONNX_API_KEY; prefer the variable: arguments are visible to other users)",
    )
    cluster = serve.add_argument_group(
        "Ray Serve (--ray; needs the `ray` extra too)",
        "replicas of this server on a Ray cluster, behind Ray Serve's proxy on --host:--port (docs/deploy.md)",
    )
    _ray_option(
        cluster,
        "serve on Ray Serve: no ADDRESS joins $RAY_ADDRESS or starts a local Ray; 'auto' joins the running cluster",
    )
    cluster.add_argument("--replicas", default="1", help="replicas, or 'auto' to scale with the load (default 1)")
    cluster.add_argument("--min-replicas", type=int, default=1, help="with --replicas auto (1)")
    cluster.add_argument("--max-replicas", type=int, default=2, help="with --replicas auto (2)")
    cluster.add_argument(
        "--target-requests",
        type=float,
        default=16.0,
        help="with --replicas auto: requests in each replica the autoscaler aims at (16)",
    )
    cluster.add_argument(
        "--max-requests", type=int, default=64, help="requests one replica holds at once; more wait in Ray (64)"
    )
    cluster.add_argument("--cpus-per-replica", type=float, default=2.0, help="CPUs each replica reserves (2)")
    cluster.add_argument("--gpus-per-replica", type=float, default=0.0, help="GPUs each replica reserves (0)")
    cluster.add_argument(
        "--request-timeout", type=float, default=60.0, help="seconds before Ray's proxy gives up on a request (60)"
    )
    serve.set_defaults(run=_serve)

    prepare = commands.add_parser(
        "prepare",
        help="fetch a model and measure its 'auto' choice on this machine now, so its first use loads as fast as "
        "any later one (a container image's build step)",
        description="Load MODEL as encode/embed (throughput) and serve (latency, one worker) load it: a Hub id is "
        "fetched, and precision 'auto' measures its candidates once and caches the result in $JINA_ONNX_HOME. "
        "The cache is per CPU model, thread count and engine version: run it on the machine type that serves.",
    )
    prepare.add_argument("--model", "-m", default="jina-embedding-t-en-v1", help="model name, directory or Hub id")
    prepare.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    prepare.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp32-opt", "fp16", "int8", "bf16"])
    prepare.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "openvino"])
    prepare.add_argument(
        "--for", dest="uses", default="encode,serve", help="what will load it: encode (and embed), serve or both"
    )
    prepare.set_defaults(run=_prepare)

    similarity = commands.add_parser("similarity", help="print the cosine similarity of two texts")
    _model_options(similarity)
    similarity.add_argument("text_a", help=f'e.g. "{SEED_A}"')
    similarity.add_argument("text_b", help=f'e.g. "{SEED_B}"')
    similarity.set_defaults(run=_similarity)
    return parser


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", default="jina-embedding-t-en-v1", help="model name or artifact directory")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "fp32-opt", "fp16", "int8", "bf16"],
        help="ONNX variant (auto: the fastest gated one measured here; bf16: OpenVINO on CPUs with bf16 units)",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: ONNX Runtime's)")
    parser.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "onnxruntime", "openvino"],
        help="CPU engine (auto: OpenVINO where installed and measured faster here, else ONNX Runtime)",
    )
    _truncation_option(parser)


def _ray_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, help: str) -> None:
    """`--ray [ADDRESS]`: the option alone gives "local" (the command decides what that starts or joins)."""
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS", help=help)


def _precision_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output-precision",
        default="float32",
        choices=["float32", "float16", "int8", "uint8", "binary", "ubinary"],
        help="the vectors' type (default float32); int8/uint8 use ranges calibrated at export, binary/ubinary "
        "pack one bit per dimension",
    )


def _truncation_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--truncation",
        default="right",
        choices=["right", "left", "refuse"],
        help="an input over the model's 512 tokens is cut at its end (right, default), at its start (left), "
        "or refused with an error naming it (refuse)",
    )


def _embed(args: argparse.Namespace) -> int:
    from .errors import InputError

    for option in ("workers", "batch_size", "threads"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise InputError(f"--{option.replace('_', '-')}={value} must be a positive integer")
    if not args.cpus_per_worker > 0 or args.cpus_per_worker == float("inf"):  # also refuses nan
        raise InputError(f"--cpus-per-worker={args.cpus_per_worker} must be a positive number")
    if not args.stall_timeout > 0:
        raise InputError(f"--stall-timeout={args.stall_timeout} must be positive (seconds)")
    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise InputError(f"OUTPUT {args.output} is a file; the job writes a directory: give a new or existing folder")
    options = {
        "precision": args.precision,
        "batch_size": args.batch_size,
        "normalize": args.normalize,
        "text_column": args.text_column,
        "id_column": args.id_column,
        "keep_text": args.keep_text,
        "on_bad_row": args.on_bad_row,
        "overwrite": args.overwrite,
        "truncation": args.truncation,
        "output_precision": args.output_precision,
    }
    if args.ray is not None:
        if args.backend not in ("auto", "onnxruntime") or args.precision == "bf16":
            raise InputError(
                "--ray runs ONNX Runtime, so every worker writes the same vectors whatever its CPU; "
                "drop --backend openvino / --precision bf16, or run without --ray"
            )
        from .corpus.loopback import in_loopback_namespace, loopback_argv
        from .corpus.ray import run_corpus_job

        if args.ray == "local" and not in_loopback_namespace():
            # A local Ray listens on every interface unless its network has only loopback (docs/architecture.md,
            # pitfall 10): run this same command in a namespace with just `lo`.
            wrapped = loopback_argv([sys.executable, "-m", "jina_onnx", *args.argv])
            if wrapped is not None:
                import subprocess

                return subprocess.call(wrapped)
            logging.getLogger("jina_onnx").warning(
                "jina-onnx: cannot make a loopback-only network namespace here "
                "(unshare -rn): the local Ray listens on every network interface"
            )
        device = "cuda" if args.device == "cuda" else "cpu"
        manifest = run_corpus_job(
            args.input,
            args.output,
            address=None if args.ray == "local" else args.ray,
            model=args.model,
            device=device,
            workers=args.workers,
            cpus_per_worker=args.cpus_per_worker,
            threads=args.threads,
            stall_timeout=args.stall_timeout,
            show_progress=not args.quiet,
            **options,
        )
    else:
        from .corpus import embed_files

        manifest = embed_files(
            args.input,
            args.output,
            model=args.model,
            device=args.device,
            threads=args.threads,
            backend=args.backend,
            show_progress=not args.quiet,
            **options,
        )
    print(_summary(manifest, args.output))
    if manifest["rows"] == 0 and manifest["rejected"]:
        logging.getLogger("jina_onnx").warning(
            "jina-onnx: every row was rejected: the reasons are in %s", Path(args.output) / "_rejected.jsonl"
        )
    return 0


def _summary(manifest: dict, output: str) -> str:
    """The last line of `embed`: what this run did, and what OUTPUT holds."""
    shards = manifest["shards"].values()
    done = manifest["embedded_this_run"]
    rejected = f", {manifest['rejected']} rejected" if manifest["rejected"] else ""
    if shards and all(shard.get("resumed") for shard in shards):
        return (
            f"nothing to do: {output} already holds all {len(shards)} input file{'s' * (len(shards) != 1)} "
            f"({manifest['rows']} texts{rejected}); --overwrite redoes them"
        )
    resumed = sum(bool(shard.get("resumed")) for shard in shards)
    kept = (
        f"; {resumed} input file{'s' * (resumed != 1)} done before ({manifest['rows']} texts in all)" if resumed else ""
    )
    return f"{done} texts embedded into {output} in {manifest['seconds']:.1f} s{rejected}{kept}"


def _serve(args: argparse.Namespace) -> int:
    from .errors import InputError

    for option in (
        "port",
        "max_queue",
        "max_inputs_per_request",
        "max_request_bytes",
        "max_batch_tokens",
        "batches_in_flight",
        "workers",
    ):
        value = getattr(args, option)
        low, high = {"port": (0, 65535), "workers": (1, 64), "batches_in_flight": (1, 64)}.get(option, (1, 1 << 40))
        if value is not None and value > high == 64:
            continue  # said below, with why
        if value is not None and not low <= value <= high:
            raise InputError(f"--{option.replace('_', '-')}={value} is out of range: use {low} to {high}")
    if args.batches_in_flight is not None and args.batches_in_flight > 64:
        raise InputError(
            f"--batches-in-flight={args.batches_in_flight} is over 64: each batch in flight takes a "
            "thread; use about the number of CPU cores"
        )
    if args.workers > 64:
        raise InputError(
            f"--workers={args.workers} is over 64: each worker loads its own model copy; use at most the cores"
        )
    repeated = next((m for i, m in enumerate(args.model or []) if m in args.model[:i]), None)
    if repeated is not None:
        raise InputError(f"-m {repeated} is given twice; name each model once")
    if not 0 <= args.max_batch_wait_ms <= 10_000:  # also refuses nan
        raise InputError(f"--max-batch-wait-ms={args.max_batch_wait_ms} is out of range: use 0 to 10000 (ms)")
    from .serve import Limits, serve

    limits = Limits(
        max_batch_tokens=args.max_batch_tokens,
        max_batch_wait_ms=args.max_batch_wait_ms,
        max_queue=args.max_queue,
        max_inputs_per_request=args.max_inputs_per_request,
        max_request_bytes=args.max_request_bytes,
    )
    if args.ray is not None:
        return _serve_on_ray(args, limits)
    serve(
        args.model or ["jina-embedding-t-en-v1"],
        host=args.host,
        port=args.port,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        limits=limits,
        backend=args.backend,
        batches_in_flight=args.batches_in_flight,
        optimize_for=args.optimize_for,
        api_key=args.api_key or os.environ.get("JINA_ONNX_API_KEY") or None,
        workers=args.workers,
    )
    return 0


def _serve_on_ray(args: argparse.Namespace, limits: Any) -> int:
    """`serve --ray`: the same app in Ray Serve replicas (jina_onnx.serve.ray)."""
    from .errors import InputError

    for option, default in (("workers", 1), ("threads", None)):
        if getattr(args, option) != default:
            raise InputError(
                f"--{option} does not apply with --ray: each replica is one process on its --cpus-per-replica "
                "(use --replicas for more copies)"
            )
    if args.replicas != "auto" and not re.fullmatch(r"[0-9]+", args.replicas):
        raise InputError(f"--replicas {args.replicas}: give a number of replicas or 'auto'")
    if not 0 < args.request_timeout <= 3600:  # also refuses nan
        raise InputError(f"--request-timeout={args.request_timeout} is out of range: use more than 0, up to 3600 (s)")
    from .serve.workers import WorkerConfig, check_port

    address = None if args.ray == "local" else args.ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None and not os.environ.get("RAY_AUTH_MODE"):
        # Ray 2.60 listens on every interface outside a loopback-only network namespace (docs/architecture.md,
        # pitfall 10): the local Ray takes a token of its own (Ray's token authentication), so no one else can
        # join it or run code on it. Ray reads these when it is first imported, below.
        import secrets

        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    from .serve.replicas import Scaling, check_placement

    scaling = Scaling(
        replicas=None if args.replicas == "auto" else int(args.replicas),
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        target_requests=args.target_requests,
        max_requests=args.max_requests,
        cpus_per_replica=args.cpus_per_replica,
        gpus_per_replica=args.gpus_per_replica,
    )
    # A replica may start on another node: a model given as a folder here is passed as its absolute path (which
    # must then exist on every node: shared storage), a name as the name (each node's JINA_ONNX_HOME or the Hub).
    models = [str(Path(m).resolve()) if Path(m).exists() else m for m in (args.model or ["jina-embedding-t-en-v1"])]
    config = WorkerConfig(
        models,
        device=args.device,
        precision=args.precision,
        backend=args.backend,
        batches_in_flight=args.batches_in_flight,
        optimize_for=args.optimize_for,
        limits=limits,
        api_key=args.api_key or os.environ.get("JINA_ONNX_API_KEY") or None,
    )
    if address is None:
        if scaling.gpus_per_replica == 0:  # this machine's CPUs are known before Ray starts: said at once
            check_placement([{"Alive": True, "Resources": {"CPU": os.cpu_count() or 1}}], scaling)
        check_port(args.host, args.port)  # the proxy runs here: a port in use is said before Ray starts
    from .serve.ray import serve_on_ray

    serve_on_ray(config, scaling, address=address, host=args.host, port=args.port, request_timeout=args.request_timeout)
    return 0


def _models(args: argparse.Namespace) -> int:
    from .errors import JinaOnnxError
    from .manifest import load_manifest
    from .registry import home_dir, list_models

    home = home_dir()
    print(f"{'name':<26} {'hub id':<32} {'arch':<11} {'dims':>5} {'layers':>6} {'params':>6}  exported")
    known = set()
    for spec in list_models():
        known.add(spec.name)
        exported = "yes" if (home / spec.name / "manifest.json").is_file() else "no"
        print(
            f"{spec.name:<26} {spec.hub_id:<32} {spec.architecture.value:<11} {spec.dim:>5} {spec.layers:>6} "
            f"{spec.params:>6}  {exported}"
        )
    # Models exported under other names (`jina-onnx export CHECKPOINT --name NAME`) load by that name as well.
    others = sorted(p for p in home.glob("*/manifest.json") if p.parent.name not in known) if home.is_dir() else []
    for path in others:
        try:
            manifest = load_manifest(path.parent)
        except JinaOnnxError as e:
            print(f"{path.parent.name:<26} {'-':<32} {'-':<11} {'-':>5} {'-':>6} {'-':>6}  damaged: {e}")
            continue
        source = manifest.source.location if manifest.source.kind == "hub" else "-"
        print(
            f"{path.parent.name:<26} {source:<32} {manifest.architecture.value:<11} {manifest.dim:>5} {'-':>6} "
            f"{'-':>6}  yes"
        )
    from .machine import cpu_class

    cpu = cpu_class()
    units = f"int8 units: {'yes' if cpu.int8_units else 'no'}, bf16 units: {'yes' if cpu.bf16_units else 'no'}"
    print(f"this CPU: {cpu.name} ({', '.join(cpu.features) or 'no features known'}); {units}")
    logging.getLogger("jina_onnx").info("jina-onnx: exported models live in %s ($JINA_ONNX_HOME)", home)
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from .build import build_model
    from .errors import InputError
    from .machine import cpu_class
    from .registry import home_dir

    uses = [use.strip() for use in args.uses.split(",") if use.strip()]
    if not uses or set(uses) - {"encode", "serve"}:
        raise InputError(f"--for {args.uses}: name encode, serve or both (--for encode,serve)")
    options = {"device": args.device, "precision": args.precision, "backend": args.backend}
    if "encode" in uses:  # as `encode` and `embed` load it
        model = build_model(args.model, **options)
        print(
            f"encode: {model.name} runs {model.backend} {model.precision} on {model.device} "
            f"({model.onnx_path.name}; CPU class {cpu_class().name})"
        )
        del model
    if "serve" in uses:  # as `serve` loads it by default: latency, batches in flight on a share of the cores
        from .serve.loading import load_models

        loaded, _, _ = load_models([args.model], **options)
        for name, model in loaded.items():
            print(
                f"serve: {name} runs {model.backend} {model.precision} on {model.device} "
                f"({model.onnx_path.name}; CPU class {cpu_class().name})"
            )
    logging.getLogger("jina_onnx").info("jina-onnx: measurements cached in %s", home_dir())
    return 0


def _export(args: argparse.Namespace) -> int:
    from .errors import require

    require("torch", "export")  # a clear message before the slow import chain starts
    from jina_onnx.export import export_model

    path = export_model(
        args.source,
        args.out,
        name=args.name,
        revision=args.revision,
        precisions=args.precision.split(",") if args.precision is not None else None,
        optimize=args.optimize,
        overwrite=args.overwrite,
    )
    print(path)
    return 0


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .build import build_model

    return build_model(
        args.model, device=args.device, precision=args.precision, threads=args.threads, backend=args.backend
    )


def _encode(args: argparse.Namespace) -> int:
    import numpy as np

    output = _npy_target(args.output) if args.output else None  # checked before the model loads
    texts = _texts(args)
    model = _load(args)
    embeddings = model.encode(
        texts,
        batch_size=args.batch_size,
        normalize=args.normalize,
        truncation=args.truncation,
        output_precision=args.output_precision,
    )
    if output is not None:
        np.save(output, embeddings)
        logging.getLogger("jina_onnx").info("jina-onnx: wrote %s %s", output, embeddings.shape)
    else:
        integers = np.issubdtype(embeddings.dtype, np.integer)
        for text, vector in zip(texts, embeddings):
            values = vector.tolist() if integers else [round(float(x), 7) for x in vector]
            print(json.dumps({"text": text, "embedding": values}))
    return 0


def _npy_target(output: str) -> str:
    """Where `np.save` will write --output (it adds .npy to a name without it); refuses what it cannot write."""
    from .errors import InputError

    target = Path(output)
    if target.is_dir():
        raise InputError(f"--output {output} is a directory; give a file name such as {target / 'embeddings.npy'}")
    if target.suffix != ".npy":
        target = target.with_name(target.name + ".npy")
    if not target.parent.is_dir():
        raise InputError(f"--output {output}: the folder {target.parent} does not exist; create it or pick another")
    return str(target)


def _texts(args: argparse.Namespace) -> list[str]:
    """The texts given as arguments, else stdin's lines; an empty or blank one is embedded but never silently."""
    from .errors import InputError

    if args.texts:
        texts = list(args.texts)
    else:
        if sys.stdin.isatty():
            print("jina-onnx: reading texts from stdin, one per line (Ctrl-D ends)", file=sys.stderr)
        try:
            texts = [line.rstrip("\r\n") for line in sys.stdin]
        except UnicodeDecodeError as e:
            raise InputError(f"stdin is not UTF-8 text (byte {e.start} of a line): pass text, one per line") from None
        if not texts:
            raise InputError("no texts: give them as arguments or one per line on stdin")
    _warn_blank(texts)
    return texts


def _warn_blank(texts: list[str]) -> None:
    blank = [i for i, text in enumerate(texts) if not text.strip()]
    if blank:
        where = ", ".join(str(i + 1) for i in blank[:5]) + (" ..." if len(blank) > 5 else "")
        logging.getLogger("jina_onnx").warning(
            "jina-onnx: %d of %d texts are empty or blank (text %s); their vectors say nothing about content",
            len(blank),
            len(texts),
            where,
        )


def _tokens(args: argparse.Namespace) -> int:
    texts = _texts(args)
    counts = _load(args).count_tokens(texts, truncation=args.truncation)
    if args.total:
        print(int(counts.sum()))
    else:
        for text, count in zip(texts, counts):
            print(json.dumps({"text": text, "tokens": int(count)}))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .artifact import resolve_artifact
    from .verify import verify_artifact

    checks = verify_artifact(resolve_artifact(args.directory, None), against=args.against)
    for check in checks:
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    failed = sum(not c.ok for c in checks)
    print(f"{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _similarity(args: argparse.Namespace) -> int:
    from .similarity import cos_sim

    _warn_blank([args.text_a, args.text_b])
    model = _load(args)
    a, b = model.encode([args.text_a, args.text_b], truncation=args.truncation)
    print(f"{cos_sim(a, b):.6f}")
    return 0
