"""The `jina-onnx` command line: a thin layer over the library.

`main(argv)` returns the exit code, so tests call it in-process. The export stage (and with it
torch) is imported only by the `export` command.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from .errors import JinaOnnxError

EXIT_CODES = """exit codes:
  0    success
  1    a user error: bad input, a missing model or file, a failed check (one line on stderr says what to do)
  2    a wrong option or argument (the usage line says which)
  3    the Hugging Face Hub could not be reached (export)
  130  interrupted (Ctrl-C)"""

SEED_A = "how is the weather today"
SEED_B = "What is the current weather like today?"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns 0 on success, 1 on a user error, 3 when the hub is unreachable."""
    parser = _parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to run the same command again (embed --ray)
    _configure_logging(args.quiet)
    try:
        return int(args.run(args) or 0)
    except JinaOnnxError as e:
        print(f"jina-onnx: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("jina-onnx: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`jina-onnx encode ... | head -1`): that is how pipes end, not an error.
        # Point stdout at /dev/null so the interpreter's final flush does not raise again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now, so a replaced stderr (tests, daemons) never breaks logging."""

    @property
    def stream(self):  # type: ignore[no-untyped-def]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # type: ignore[no-untyped-def]
        pass


def _configure_logging(quiet: bool) -> None:
    # Only jina-onnx's own progress lines; the libraries it drives (ORT's optimizer and quantizer
    # log every fused node at INFO) stay at their WARNING default.
    logger = logging.getLogger("jina_onnx")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
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
        default="fp32,fp16,int8",
        help="comma-separated: fp32 (always), fp16 (CUDA), int8 (CPU); each is kept only where it passes its gate",
    )
    export.add_argument(
        "--optimize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also write fp32-opt (ONNX Runtime CPU fusions) and derive fp16/int8 from it",
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
    embed.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run on Ray Data: no ADDRESS starts a local Ray, 'auto' joins the running cluster",
    )
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
        description="Serve /v1/embeddings (OpenAI), /embed (TEI), /v1/models, /health and "
        "/metrics, batching concurrent requests. SIGTERM finishes requests in "
        "flight, then exits.",
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
    serve.set_defaults(run=_serve)

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
    if args.cpus_per_worker <= 0:
        raise InputError(f"--cpus-per-worker={args.cpus_per_worker} must be positive")
    if args.stall_timeout <= 0:
        raise InputError(f"--stall-timeout={args.stall_timeout} must be positive (seconds)")
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
    print(
        f"{manifest['rows']} texts embedded into {args.output} ({manifest['rejected']} rejected, "
        f"{manifest['seconds']:.1f} s this run)"
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    import os

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
        if value is not None and (
            value < (0 if option == "port" else 1) or value > (65535 if option == "port" else 1 << 40)
        ):
            raise InputError(f"--{option.replace('_', '-')}={value} is out of range")
    if args.batches_in_flight is not None and args.batches_in_flight > 64:
        raise InputError(
            f"--batches-in-flight={args.batches_in_flight} is over 64: each batch in flight takes a "
            "thread; use about the number of CPU cores"
        )
    if args.workers > 64:
        raise InputError(
            f"--workers={args.workers} is over 64: each worker loads its own model copy; use at most the cores"
        )
    if args.max_batch_wait_ms < 0:
        raise InputError(f"--max-batch-wait-ms={args.max_batch_wait_ms} must be 0 or more")
    from .serve import Limits, serve

    limits = Limits(
        max_batch_tokens=args.max_batch_tokens,
        max_batch_wait_ms=args.max_batch_wait_ms,
        max_queue=args.max_queue,
        max_inputs_per_request=args.max_inputs_per_request,
        max_request_bytes=args.max_request_bytes,
    )
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


def _models(args: argparse.Namespace) -> int:
    from .registry import home_dir, list_models

    print(f"{'name':<26} {'hub id':<32} {'arch':<11} {'dims':>5} {'layers':>6} {'params':>6}  exported")
    for spec in list_models():
        exported = "yes" if (home_dir() / spec.name / "manifest.json").is_file() else "no"
        print(
            f"{spec.name:<26} {spec.hub_id:<32} {spec.architecture.value:<11} {spec.dim:>5} {spec.layers:>6} "
            f"{spec.params:>6}  {exported}"
        )
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
        precisions=args.precision.split(","),
        optimize=args.optimize,
        overwrite=args.overwrite,
    )
    print(path)
    return 0


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .model import build_model

    return build_model(
        args.model, device=args.device, precision=args.precision, threads=args.threads, backend=args.backend
    )


def _encode(args: argparse.Namespace) -> int:
    import numpy as np

    texts = list(args.texts) or [line.rstrip("\n") for line in sys.stdin]
    model = _load(args)
    embeddings = model.encode(
        texts,
        batch_size=args.batch_size,
        normalize=args.normalize,
        truncation=args.truncation,
        output_precision=args.output_precision,
    )
    if args.output:
        np.save(args.output, embeddings)
        logging.getLogger("jina_onnx").info("jina-onnx: wrote %s %s", args.output, embeddings.shape)
    else:
        integers = np.issubdtype(embeddings.dtype, np.integer)
        for text, vector in zip(texts, embeddings):
            values = vector.tolist() if integers else [round(float(x), 7) for x in vector]
            print(json.dumps({"text": text, "embedding": values}))
    return 0


def _tokens(args: argparse.Namespace) -> int:
    texts = list(args.texts) or [line.rstrip("\n") for line in sys.stdin]
    counts = _load(args).count_tokens(texts, truncation=args.truncation)
    if args.total:
        print(int(counts.sum()))
    else:
        for text, count in zip(texts, counts):
            print(json.dumps({"text": text, "tokens": int(count)}))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .model import resolve_artifact
    from .verify import verify_artifact

    checks = verify_artifact(resolve_artifact(args.directory, None), against=args.against)
    for check in checks:
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    failed = sum(not c.ok for c in checks)
    print(f"{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _similarity(args: argparse.Namespace) -> int:
    from .similarity import cos_sim

    model = _load(args)
    a, b = model.encode([args.text_a, args.text_b], truncation=args.truncation)
    print(f"{cos_sim(a, b):.6f}")
    return 0
