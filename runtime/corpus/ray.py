"""Ray Data integration (the `ray` extra): `embed_dataset` for your own pipelines, and the corpus job on Ray.

`embed_dataset(ds, model=..., column="text")` adds an `embedding` column with `map_batches` over an actor
pool: each actor loads the model once and embeds whole Arrow batches. The artifact reaches every node in
one of two ways:
- shipped through Ray's object store (`ship="auto"` does this up to `SHIP_LIMIT`, 512 MiB: the files one
  precision needs: t is 15-60 MB, s 35-140 MB, b 110-440 MB, l fp32 1.3 GB, l int8 about 340 MB); each
  actor writes them to a local temporary directory and checks every sha256 as usual;
- or read from a path that every node sees (`ship="path"`, a shared filesystem), required above the limit.

`run_corpus_job` is `jina-onnx embed --ray`: the same readers, ids and bad-row rules as the local job,
one read task per input file (Ray Data's own readers do not expose row numbers, and the default ids are
file + row number), the embedding actors, and `write_parquet` into a staging directory under OUTPUT that
is moved into place when the whole dataset is written. Ray retries the tasks and restarts the actors of
a worker that dies, so its rows are neither lost nor written twice. OUTPUT must be on storage every node
can write (a shared filesystem), as for any Ray Data write.

Example:
    >>> import ray, jina_onnx.ray
    >>> ds = ray.data.read_parquet("s3://bucket/passages/")  # doctest: +SKIP
    >>> ds = jina_onnx.ray.embed_dataset(ds, model="/shared/jina-embedding-s-en-v1", column="text", workers=8)  # doctest: +SKIP
    >>> ds.write_parquet("s3://bucket/vectors/")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from ..artifact import checked_file, resolve_artifact
from ..atomic import write_atomically
from ..errors import InputError, JinaOnnxError, require
from ..manifest import Manifest, Precision, Variant, load_manifest, safe_member
from ..registry import home_dir
from .job import (
    MANIFEST,
    REJECTED,
    REJECTED_PARTS,
    CorpusError,
    JobSettings,
    count_lines,
    discover,
    job_manifest,
    job_settings,
    merge_rejected,
    read_rows,
    shard_name,
    split_rows,
)
from .progress import watch

SHIP_LIMIT = 512 << 20
READ_CPUS = 0.25  # what each read task asks of Ray (run_corpus_job)
STALL_TIMEOUT = 600.0  # seconds without a row written before a Ray job is stopped (--stall-timeout)


def payload_files(directory: Path, precision: str) -> list[Path]:
    """The files one precision needs: manifest, tokenizer, probe and one ONNX file."""
    manifest = load_manifest(directory)
    variant = manifest.variants[Precision(precision)]
    names = ["manifest.json", manifest.tokenizer.file]
    if manifest.probe is not None:
        names.append(manifest.probe.file)
    # The graph from the Hub where the artifact was opened there (jina_onnx.hub), checked against the manifest.
    return [*(safe_member(directory, name) for name in names), checked_file(directory, variant.file, variant.sha256)]


def corpus_variant(directory: Path, manifest: Manifest, precision: str, device: str, threads: int) -> Variant:
    """The one variant every actor runs, so one corpus never mixes variants: the load plan's choice for ONNX
    Runtime on `device`. Where "auto" has candidates, they are measured here on the driver for throughput
    (on a CPU; cached like any other load), or, for CUDA, which the driver may not have, CUDA's first
    candidate runs (fp16 where the artifact has it: docs/gpu.md)."""
    from ..loader import settle
    from ..loadplan import CUDA, Facts, Request, plan_load

    request = Request(device=device, precision=precision, backend="onnxruntime")
    if device == "cpu":
        plan, _ = settle(directory, manifest, request, threads=threads, cache_dir=home_dir(None))
        option = plan.choice
    else:
        plan = plan_load(
            request,
            Facts(
                name=manifest.name,
                variants=tuple(p.value for p in manifest.variants),
                providers=(CUDA,),
                rejected=dict(manifest.rejected),
            ),
        )
        option = plan.choice or plan.measure[0]
    assert option is not None
    return manifest.variants[Precision(option.variant)]


def artifact_payload(directory: Path, precision: str) -> dict[str, bytes]:
    """Those files' bytes by their path in the artifact (graphs live under onnx/), to ship through the object store."""
    return {path.relative_to(directory).as_posix(): path.read_bytes() for path in payload_files(directory, precision)}


class _Embedder:
    """One per actor: loads the model once, then embeds Arrow batches (adds `output_column`)."""

    def __init__(
        self,
        artifact: Any,
        precision: str,
        device: str,
        threads: int | None,
        column: str,
        output_column: str,
        normalize: bool | None,
        batch_size: int | None,
        truncation: str = "right",
        output_precision: str = "float32",
    ) -> None:
        from ..build import build_model

        self.truncation, self.output_precision = truncation, output_precision
        shipped: tempfile.TemporaryDirectory[str] | None = None
        if isinstance(artifact, str):
            directory = Path(artifact)
            if not directory.is_dir():
                raise CorpusError(
                    f"{artifact}: not found on this node; put the artifact on a path every node shares "
                    "or let it ship through the object store (ship='auto')"
                )
        else:
            ray = require("ray", "ray")
            files = ray.get(artifact) if not isinstance(artifact, dict) else artifact
            shipped = tempfile.TemporaryDirectory(prefix="jina-onnx-artifact-")
            directory = Path(shipped.name)
            for name, data in files.items():
                target = safe_member(directory, name)  # names from the driver's manifest; never outside
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        # ONNX Runtime on every worker: an "auto" choice per node could mix engines in one corpus. On a GPU the
        # host workers stay within the CPUs Ray reserved for this actor (all but the one driving the GPU), not
        # the node's: several GPU actors share a node.
        host_workers = max(1, threads - 1) if device == "cuda" and threads else None
        try:
            self.model = build_model(
                directory,
                device=device,
                precision=precision,
                threads=threads,
                backend="onnxruntime",
                host_workers=host_workers,
            )
        finally:
            # The built session and tokenizer need no file any more, so a shipped copy goes now: Ray kills its
            # actors at shutdown, which runs no finalizer, and each would leave a whole artifact in the node's /tmp.
            if shipped is not None:
                shipped.cleanup()
        self.column, self.output_column = column, output_column
        self.normalize, self.batch_size = normalize, batch_size

    def __call__(self, batch: Any) -> Any:
        pa = require("pyarrow", "ray")
        texts = batch.column(self.column).to_pylist()
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize=self.normalize,
            truncation=self.truncation,
            output_precision=self.output_precision,
        )
        flat = pa.array(vectors.reshape(-1))
        embedding = pa.FixedSizeListArray.from_arrays(flat, self.model.dim)
        return batch.append_column(self.output_column, embedding)


def embed_dataset(
    ds: Any,
    *,
    model: str | os.PathLike[str],
    column: str = "text",
    output_column: str = "embedding",
    precision: str = "auto",
    device: str = "cpu",
    workers: int = 1,
    cpus_per_worker: float = 1.0,
    threads: int | None = None,
    rows_per_batch: int = 4096,
    batch_size: int | None = None,
    normalize: bool | None = None,
    ship: str = "auto",
    cache_dir: str | None = None,
    truncation: str = "right",
    output_precision: str = "float32",
) -> Any:
    """Add an embedding column to a Ray Dataset with an actor pool of `workers` model copies.

    Args:
        ds: a `ray.data.Dataset` with a string column `column`.
        model: a model name (in $JINA_ONNX_HOME on the driver) or an artifact directory.
        precision: the variant; "auto" picks for `device` as `build_model` would.
        device: "cpu" or "cuda" (then each actor asks Ray for one GPU).
        workers: actors in the pool; cpus_per_worker: the CPUs Ray reserves for each.
        threads: ONNX Runtime threads per actor (default: cpus_per_worker rounded, at least 1); on CUDA,
            the actor's host worker threads are one fewer (at least 1).
        rows_per_batch: rows per `map_batches` call; batch_size: texts per ONNX Runtime call inside it.
        ship: "auto" (object store up to SHIP_LIMIT, else path), "object-store" or "path".

    Example:
        >>> ds = embed_dataset(ray.data.read_parquet("passages/"), model="jina-embedding-t-en-v1", workers=2)  # doctest: +SKIP
    """
    ray = require("ray", "ray")
    if device not in ("cpu", "cuda"):
        raise InputError(f"device={device!r} must be 'cpu' or 'cuda' on Ray (workers may differ from the driver)")
    if ship not in ("auto", "object-store", "path"):
        raise InputError(f"ship={ship!r} must be 'auto', 'object-store' or 'path'")
    directory = resolve_artifact(model, cache_dir)
    resolved = corpus_variant(
        directory, load_manifest(directory), precision, device, threads or max(1, round(cpus_per_worker))
    ).precision.value
    size = sum(path.stat().st_size for path in payload_files(directory, resolved))
    if ship == "object-store" or (ship == "auto" and size <= SHIP_LIMIT):
        artifact: Any = ray.put(artifact_payload(directory, resolved))
    else:
        artifact = str(directory.resolve())
    return ds.map_batches(
        _Embedder,
        batch_format="pyarrow",
        batch_size=rows_per_batch,
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=cpus_per_worker,
        num_gpus=1 if device == "cuda" else 0,
        fn_constructor_kwargs={
            "artifact": artifact,
            "precision": resolved,
            "device": device,
            "threads": threads or max(1, round(cpus_per_worker)),
            "column": column,
            "output_column": output_column,
            "normalize": normalize,
            "batch_size": batch_size,
            "truncation": truncation,
            "output_precision": output_precision,
        },
        # Ray Data's actor pools restart an actor whose process dies (max_restarts=-1) and retry its batches
        # (max_task_retries=-1) by default: no row is lost or doubled. tests/test_corpus.py kills one to check.
    )


def _read_shards(batch: dict[str, Any], settings: JobSettings, out: str) -> Any:
    """A read task per input file (a function, so Ray runs them in parallel): its rows with file + row ids;
    bad rows stop the job or are set aside in OUTPUT/_rejected.parts."""
    pa = require("pyarrow", "ray")
    for path_text in batch["path"]:
        path = Path(str(path_text))
        rejects: list[str] = []
        seen = 0
        for chunk in read_rows(path, settings.text_column, settings.id_column):
            good, bad = split_rows(path, chunk, settings, seen)
            rejects += bad
            seen += len(chunk)
            if good:
                yield pa.table(
                    {
                        "id": pa.array([r.id for r in good], pa.string()),
                        "text": pa.array([r.text for r in good], pa.string()),
                    }
                )
        if rejects:  # written whole per file, so a retried read task rewrites it rather than adding to it
            part = Path(out) / REJECTED_PARTS / f"{shard_name(path)}.jsonl"
            part.parent.mkdir(exist_ok=True)
            write_atomically(part, "".join(rejects))


def check_capacity(node_cpus: list[float], workers: int, cpus_per_worker: float) -> None:
    """Refuse an actor pool this cluster cannot hold while still running the read tasks.

    Ray waits without a word for resources that never free up: `--workers 2` of one CPU each on a 2-CPU
    Ray left nothing for the 0.25-CPU read tasks, and the job made no progress for 15 minutes
    (docs/architecture.md, pitfall 9). Actors are placed first fit, one node each, as Ray can place them.

    Example:
        >>> check_capacity([2.0], workers=2, cpus_per_worker=0.5)  # 1 CPU left for the reads
        >>> check_capacity([1.0, 1.0], workers=2, cpus_per_worker=1.0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        jina_onnx.corpus.job.CorpusError: --workers 2 x --cpus-per-worker 1 take every CPU of this Ray cluster ...
    """
    free = sorted(node_cpus, reverse=True)
    for placed in range(workers):
        node = next((i for i, cpus in enumerate(free) if cpus + 1e-9 >= cpus_per_worker), None)
        if node is None:
            raise CorpusError(
                f"--workers {workers} x --cpus-per-worker {cpus_per_worker:g} do not fit this Ray cluster: its nodes "
                f"have {', '.join(f'{c:g}' for c in node_cpus) or 'no'} CPUs, room for {placed} such workers; lower "
                "--workers or --cpus-per-worker (a worker runs on one node)"
            )
        free[node] -= cpus_per_worker
    if max(free, default=0.0) + 1e-9 < READ_CPUS:
        fit = (sum(node_cpus) - READ_CPUS) / workers
        hint = f"--cpus-per-worker {int(fit * 4) / 4:g} or less" if fit >= 0.25 else f"--workers {workers - 1}"
        raise CorpusError(
            f"--workers {workers} x --cpus-per-worker {cpus_per_worker:g} take every CPU of this Ray cluster "
            f"({sum(node_cpus):g}) and leave none for the tasks that read the input ({READ_CPUS:g} CPU each): "
            f"the job would wait forever; use {hint}"
        )


def run_corpus_job(
    source: str,
    output: str,
    *,
    address: str | None,
    model: str,
    precision: str = "auto",
    device: str = "cpu",
    workers: int = 1,
    cpus_per_worker: float = 1.0,
    threads: int | None = None,
    batch_size: int | None = None,
    normalize: bool | None = None,
    text_column: str = "text",
    id_column: str | None = None,
    keep_text: bool = False,
    on_bad_row: str = "stop",
    overwrite: bool = False,
    ship: str = "auto",
    num_cpus: float | None = None,
    stall_timeout: float = STALL_TIMEOUT,
    show_progress: bool = False,
    truncation: str = "right",
    output_precision: str = "float32",
) -> dict[str, Any]:
    """`jina-onnx embed --ray [ADDRESS]`: the corpus job on Ray Data; returns the manifest it wrote.

    `address` None starts a local Ray (with `num_cpus` if given); "auto" or "ray://..." joins a cluster.
    The job refuses a pool the cluster cannot run (`check_capacity`), reports rows written as it goes
    (`show_progress`: a bar), and stops with a CorpusError when no row was written for `stall_timeout` seconds.
    """
    ray = require("ray", "ray")
    if on_bad_row not in ("stop", "skip"):
        raise InputError(f"on_bad_row={on_bad_row!r} must be 'stop' or 'skip'")
    if truncation not in ("right", "left"):
        # Bad rows are found by the read tasks, which hold no tokenizer: refusing long rows needs the local runner.
        raise InputError(
            f"truncation={truncation!r}: a Ray job cuts long inputs (right or left); use the local "
            "runner (no --ray) to refuse them"
        )
    files = discover(source)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    existing = [p for p in out.glob("*.parquet")]
    if existing and not overwrite:
        raise CorpusError(
            f"{out} already holds {len(existing)} Parquet files; pass --overwrite to replace them "
            "(a Ray run is redone whole; the local runner resumes per shard)"
        )
    directory = resolve_artifact(model, None)
    manifest = load_manifest(directory)
    resolved = corpus_variant(directory, manifest, precision, device, threads or max(1, round(cpus_per_worker)))
    settings = job_settings(
        manifest,
        resolved.sha256,
        resolved.precision.value,
        normalize,
        text_column,
        id_column,
        keep_text,
        on_bad_row,
        truncation,
        output_precision,
    )
    with _ray_session(ray, address, num_cpus) as terminal:
        check_capacity(
            [float(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node.get("Alive")],
            workers,
            cpus_per_worker,
        )
        for leftover in out.glob(".ray-staging-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        shutil.rmtree(out / REJECTED_PARTS, ignore_errors=True)
        staging = out / f".ray-staging-{os.getpid()}"
        started, clock = dt.datetime.now(dt.timezone.utc), time.perf_counter()
        ds = ray.data.from_items([{"path": str(p.resolve())} for p in files], override_num_blocks=len(files))
        # Read tasks take a quarter CPU: with whole CPUs they could starve beside the actors
        # (docs/architecture.md, pitfall 9).
        ds = ds.map_batches(
            _read_shards, fn_kwargs={"settings": settings, "out": str(out.resolve())}, batch_size=1, num_cpus=READ_CPUS
        )
        ds = embed_dataset(
            ds,
            model=directory,
            column="text",
            precision=resolved.precision.value,
            device=device,
            workers=workers,
            cpus_per_worker=cpus_per_worker,
            threads=threads,
            batch_size=batch_size,
            normalize=settings.normalize,
            ship=ship,
            truncation=truncation,
            output_precision=output_precision,
        )
        if not keep_text:
            ds = ds.drop_columns(["text"])
        tqdm = require("tqdm", "cpu") if show_progress else None
        bar = (
            tqdm.tqdm(desc=f"embed {manifest.name} on Ray", unit="text", smoothing=0.1, file=terminal) if tqdm else None
        )
        try:
            watch(
                lambda: ds.write_parquet(str(staging.resolve())),
                _RowsWritten(staging),
                stall_timeout=stall_timeout,
                on_stall=ray.shutdown,
                # `is not None`: a tqdm bar without a total refuses bool() (TypeError), which crashed every
                # `embed --ray` run with its progress bar on.
                report=lambda done, seconds: bar.update(done - bar.n) if bar is not None else None,
                what=f"the Ray job ({workers} workers)",
            )
        except Exception as error:
            shutil.rmtree(staging, ignore_errors=True)
            found = corpus_error(error)
            if found is not None:
                # Ray appends its own advice on retries to the message: ours is the first line.
                raise CorpusError(str(found).splitlines()[0]) from None
            raise
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - clock
        for old in existing:
            old.unlink()
        for written in sorted(staging.glob("*.parquet")):
            os.replace(written, out / written.name)
        shutil.rmtree(staging, ignore_errors=True)
        merge_rejected(out, [shard_name(p) for p in files])
        pq = require("pyarrow.parquet", "ray")
        rows = sum(pq.ParquetFile(str(p)).metadata.num_rows for p in out.glob("*.parquet"))
        rejected = count_lines(out / REJECTED)

        data = job_manifest(
            settings,
            manifest.dim,
            device,
            "onnxruntime",
            {"all": {"input": str(source), "rows": rows, "rejected": rejected}},
            started,
            seconds,
            rows,
            runner=f"ray ({workers} workers)",
        )
        write_atomically(out / MANIFEST, json.dumps(data, indent=2) + "\n")
        return data


@contextlib.contextmanager
def _ray_session(ray: Any, address: str | None, num_cpus: float | None) -> Iterator[TextIO]:
    """Ray for one job: started (or joined) unless the caller runs one already, and shut down after the job,
    failed or not: a failed job left its local Ray's DashboardAgent and RuntimeEnvAgent running.

    Ray's own output stays off the terminal: its processes and its C++ core write to file descriptor 2 directly
    (an "E" line about actor arguments, a failed IP lookup, Ray Data's "no available CPUs" while the actors hold
    them), and Ray Data logs whole tracebacks of a task's error that we report in one line. While Ray runs,
    descriptor 2 (and `sys.stderr` with it) goes to a log file, kept and named when the job fails; the stream
    yielded is the terminal, for our progress bar."""
    import sys

    if ray.is_initialized():
        yield sys.stderr
        return
    # Ray Data logs each run's start and end and misleading warnings at INFO/WARNING; the bar and our errors say
    # what a user needs. Read when Ray Data sets up its logging, on its first import.
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
    with contextlib.ExitStack() as stack:
        terminal = stack.enter_context(stderr_to_file())
        init_quiet(ray, address, num_cpus)
        stack.callback(ray.shutdown)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # ours reports the job
        context.enable_operator_progress_bars = False
        context.print_on_execution_start = False
        context.enable_auto_log_stats = False
        yield terminal


def init_quiet(ray: Any, address: str | None, num_cpus: float | None = None) -> None:
    """`ray.init` as `embed --ray` and `serve --ray` start or join Ray: `address` None starts a Ray of our own
    ("local": with None, Ray joins the last cluster started on this machine, /tmp/ray/ray_current_cluster, which
    hung a job on one in another network namespace), with no dashboard (its job API runs code for anyone who
    reaches it) and Ray's logs kept off the driver."""
    ray.init(
        address=address or "local",
        num_cpus=num_cpus if address is None else None,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )


@contextlib.contextmanager
def stderr_to_file() -> Iterator[TextIO]:
    """Descriptor 2 into a temporary log while the block runs; yields a stream on the former descriptor 2 (the
    terminal). The log is removed unless the block fails with something other than our own error."""
    import sys

    sys.stderr.flush()
    handle = tempfile.NamedTemporaryFile(prefix="jina-onnx-ray-", suffix=".log", delete=False)
    saved = os.dup(2)
    os.dup2(handle.fileno(), 2)
    terminal = open(saved, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace", closefd=False)
    failed = True
    try:
        yield terminal
        failed = False
    except JinaOnnxError:  # a user's error in our words, which say all there is: Ray's log is no help
        failed = False
        raise
    finally:
        sys.stderr.flush()
        terminal.flush()
        os.dup2(saved, 2)
        os.close(saved)
        handle.close()
        if failed:
            logging.getLogger("jina_onnx").error("jina-onnx: Ray's own output is in %s", handle.name)
        else:
            os.unlink(handle.name)


class _RowsWritten:
    """Rows in the Parquet files Ray Data has finished in `staging` so far (the job's progress)."""

    def __init__(self, staging: Path) -> None:
        self.staging = staging
        self.counted: dict[str, int] = {}

    def __call__(self) -> int:
        pq = require("pyarrow.parquet", "ray")
        for path in self.staging.glob("*.parquet"):
            if path.name not in self.counted:
                try:  # a file being written has no footer yet: counted on a later poll
                    self.counted[path.name] = pq.ParquetFile(str(path)).metadata.num_rows
                except Exception:
                    continue
        return sum(self.counted.values())


def corpus_error(error: BaseException | None) -> CorpusError | None:
    """The CorpusError (a bad row, say) behind an exception Ray raised for a failed task, if there is one.

    Ray wraps a task's exception in a RayTaskError whose `cause` is the original, sometimes inside Ray Data's own
    exceptions (`__cause__`)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        cause = getattr(error, "cause", None)
        if isinstance(cause, CorpusError):
            return cause
        if isinstance(error, CorpusError) and cause is None:
            return error
        error = cause if isinstance(cause, BaseException) else (error.__cause__ or error.__context__)
    return None
