"""`jina-onnx embed INPUT OUTPUT`: embed a corpus file to file, resumably, on this machine (or on Ray).

INPUT is a file, a directory or a glob of Parquet (.parquet), JSON Lines (.jsonl, .ndjson, .json) or plain
text (.txt: one text per line). OUTPUT is a directory with one Parquet file per input file (a "shard"):
`id` (string), `embedding` (fixed_size_list<float32>[dim]) and, with `keep_text`, `text`. A
`_manifest.json` (model, artifact sha256, precision, dim, counts, time) is written last.

Crash safety: each shard is written to a hidden temporary name and renamed when complete, so a shard file
is either whole or absent; a rerun skips finished shards (after checking they were made by the same model
and settings) and redoes the rest. A SIGKILL and a rerun give the same rows as one uninterrupted run.

Bad rows (null, not a string, empty or blank, not valid UTF-8, a JSON line that does not parse or lacks the
column) stop the job with the file and row, unless `on_bad_row="skip"`: then they go to `OUTPUT/_rejected.jsonl`
with the reason. Nothing is dropped silently.

Needs pyarrow (the `ray` extra, or `pip install pyarrow`).

Example:
    >>> from jina_onnx.corpus import embed_files
    >>> embed_files("corpus/*.jsonl", "vectors/", model="jina-embedding-t-en-v1")  # doctest: +SKIP
    {'rows': 20000, 'rejected': 0, ...}
"""

from __future__ import annotations

import datetime as dt
import glob as globbing
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import process_alive, write_atomically
from ..build import build_model
from ..errors import InputError, JinaOnnxError, require
from ..manifest import Manifest
from ..model import EmbeddingModel, TruncationWarning
from ..quantize import check_precision
from ..tokenization import TRUNCATIONS

log = logging.getLogger("jina_onnx")

FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".txt": "text"}
MANIFEST = "_manifest.json"
REJECTED = "_rejected.jsonl"
REJECTED_PARTS = "_rejected.parts"  # per-shard rejected rows, merged into REJECTED at the end
META_KEY = b"jina_onnx"  # Parquet key-value metadata: what made the shard, checked before a rerun skips it
CHUNK_ROWS = 4096  # rows read, embedded and written at a time: memory stays bounded by this


class CorpusError(JinaOnnxError):
    """The corpus job cannot go on: a bad row, an unreadable input, an output made by other settings."""


@dataclass(frozen=True)
class JobSettings:
    """What decides a shard's content; a finished shard is reused only when these match."""

    model: str
    onnx_sha256: str
    precision: str
    normalize: bool
    text_column: str
    id_column: str | None
    keep_text: bool
    on_bad_row: str
    truncation: str = "right"  # an input over the model's tokens is cut (right, left) or a bad row (refuse)
    output_precision: str = "float32"  # the embedding column's type (jina_onnx.quantize)


@dataclass(frozen=True)
class Row:
    id: str
    text: str | None  # None for a rejected row
    reason: str | None = None  # why it was rejected


def discover(source: str | os.PathLike[str]) -> list[Path]:
    """The input files: one file, every known file in a directory (not recursive), or a glob; sorted."""
    path = Path(source)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FORMATS)
    else:
        files = sorted(Path(p) for p in globbing.glob(str(source)) if Path(p).is_file())
    if not files:
        raise CorpusError(
            f"{source}: no input files (expected a file, a directory or a glob of {', '.join(sorted(FORMATS))})"
        )
    unknown = [str(p) for p in files if p.suffix.lower() not in FORMATS]
    if unknown:
        raise CorpusError(f"{unknown[0]}: unknown format; expected one of {', '.join(sorted(FORMATS))}")
    names = [shard_name(p) for p in files]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise CorpusError(f"two inputs would both write {duplicate}; give files distinct names")
    return files


def shard_name(path: Path) -> str:
    """Output file of an input file: its name plus .parquet (corpus/part-1.jsonl -> part-1.jsonl.parquet)."""
    return f"{path.name}.parquet"


def read_rows(
    path: Path, text_column: str = "text", id_column: str | None = None, chunk_rows: int = CHUNK_ROWS
) -> Iterator[list[Row]]:
    """The rows of one input file in chunks, each checked; rejected rows carry their reason.

    Default ids are "<file name>:<row number>" (0-based, counting every line or record, bad ones too),
    stable across runs and machines.
    """
    kind = FORMATS[path.suffix.lower()]
    if kind == "parquet":
        yield from _parquet_rows(path, text_column, id_column, chunk_rows)
        return
    chunk: list[Row] = []
    first = True
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle):
            line = raw[:-1] if raw.endswith(b"\n") else raw
            line = line[:-1] if line.endswith(b"\r") else line
            chunk.append(
                _text_row(path, number, line)
                if kind == "text"
                else _json_row(path, number, line, text_column, id_column)
            )
            if len(chunk) == chunk_rows:
                if first:
                    _check_column(path, chunk, text_column)
                    first = False
                yield chunk
                chunk = []
    if chunk:
        if first:
            _check_column(path, chunk, text_column)
        yield chunk


def _check_column(path: Path, chunk: list[Row], text_column: str) -> None:
    """Refuse a JSON Lines file whose first rows all lack the text field: a wrong --text-column, not bad rows
    (skipping them would embed nothing, with exit 0)."""
    missing = f"no {text_column!r} field (fields: "
    reasons = [row.reason or "" for row in chunk]
    if chunk and all(reason.startswith(missing) for reason in reasons):
        fields = reasons[0][len(missing) : -1]
        example = f", e.g. --text-column {fields.split(', ')[0].strip(chr(39))}" if fields != "none" else ""
        raise CorpusError(
            f"{path}: no row has a {text_column!r} field (the first has {fields}); name the text field with "
            f"--text-column{example}"
        )


def _text_row(path: Path, number: int, line: bytes) -> Row:
    row_id = f"{path.name}:{number}"
    try:
        return _checked(row_id, line.decode("utf-8"), "text")
    except UnicodeDecodeError as error:
        return Row(row_id, None, f"not valid UTF-8 (byte {error.start})")


def _json_row(path: Path, number: int, line: bytes, text_column: str, id_column: str | None) -> Row:
    row_id = f"{path.name}:{number}"
    try:
        record = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as error:
        return Row(row_id, None, f"not valid UTF-8 (byte {error.start})")
    except json.JSONDecodeError as error:
        return Row(row_id, None, f"not valid JSON ({error.msg})")
    if not isinstance(record, dict):
        return Row(row_id, None, "not a JSON object")
    if id_column is not None:
        if record.get(id_column) is None:
            return Row(row_id, None, f"no {id_column!r} (the id column)")
        row_id = str(record[id_column])
    if text_column not in record:
        fields = ", ".join(map(repr, list(record)[:8])) or "none"
        return Row(row_id, None, f"no {text_column!r} field (fields: {fields})")
    return _checked(row_id, record[text_column], text_column)


def _checked(row_id: str, value: object, text_column: str) -> Row:
    if value is None:
        return Row(row_id, None, "text is null")
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as error:
            return Row(row_id, None, f"not valid UTF-8 (byte {error.start})")
    if not isinstance(value, str):
        return Row(row_id, None, f"text is {type(value).__name__}, not a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return Row(row_id, None, "not valid UTF-8 (lone surrogate)")
    if not value.strip():
        # An empty or blank text still gets a vector, one that says nothing about content: never silently.
        return Row(row_id, None, "empty text" if not value else "blank text (only whitespace)")
    return Row(row_id, value)


def _parquet_rows(path: Path, text_column: str, id_column: str | None, chunk_rows: int) -> Iterator[list[Row]]:
    pq = require("pyarrow.parquet", "ray")
    try:
        reader = pq.ParquetFile(str(path))
    except Exception as error:  # pyarrow raises ArrowInvalid / OSError for a file that is not Parquet
        raise CorpusError(f"{path}: cannot be read as Parquet ({error})") from error
    columns = reader.schema_arrow.names
    for wanted in (text_column, id_column):
        if wanted is not None and wanted not in columns:
            raise CorpusError(
                f"{path}: no column {wanted!r} (it has {', '.join(columns)}); use --text-column / --id-column"
            )
    number = 0
    for batch in reader.iter_batches(batch_size=chunk_rows, columns=[c for c in (text_column, id_column) if c]):
        texts = batch.column(text_column).to_pylist()
        ids = batch.column(id_column).to_pylist() if id_column else None
        rows = []
        for i, text in enumerate(texts):
            row_id = f"{path.name}:{number + i}"
            if ids is not None:
                if ids[i] is None:
                    rows.append(Row(row_id, None, f"no {id_column!r} (the id column)"))
                    continue
                row_id = str(ids[i])
            rows.append(_checked(row_id, text, text_column))
        number += len(texts)
        yield rows


# Parquet's value type for each output precision (binary and ubinary: packed bits, dim / 8 values).
ARROW_TYPES = {
    "float32": "float32",
    "float16": "float16",
    "int8": "int8",
    "uint8": "uint8",
    "binary": "int8",
    "ubinary": "uint8",
}


def output_schema(dim: int, keep_text: bool, output_precision: str = "float32") -> Any:
    pa = require("pyarrow", "ray")
    width = dim // 8 if output_precision in ("binary", "ubinary") else dim
    value = getattr(pa, ARROW_TYPES[output_precision])()
    # Nullable as Arrow and Ray Data write them by default, so both runners give one schema; nothing is null.
    fields = [pa.field("id", pa.string()), pa.field("embedding", pa.list_(value, width))]
    if keep_text:
        fields.append(pa.field("text", pa.string()))
    return pa.schema(fields)


def to_table(ids: list[str], vectors: np.ndarray, texts: list[str] | None, schema: Any) -> Any:
    """An Arrow table of one chunk; the embeddings are wrapped without copying."""
    pa = require("pyarrow", "ray")
    flat = pa.array(np.ascontiguousarray(vectors).reshape(-1))  # the precision's own type (float32 by default)
    columns = [pa.array(ids, pa.string()), pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])]
    if texts is not None:
        columns.append(pa.array(texts, pa.string()))
    return pa.Table.from_arrays(columns, schema=schema)


def split_rows(path: Path, chunk: list[Row], settings: JobSettings, seen: int) -> tuple[list[Row], list[str]]:
    """A chunk's good rows and its bad ones as `_rejected.jsonl` lines; raises for a bad row when the job stops
    on them (`--on-bad-row stop`). `seen`: rows of this file before the chunk. Both runners use it."""
    good = [r for r in chunk if r.text is not None]
    if len(good) == len(chunk):
        return good, []
    if settings.on_bad_row == "stop":
        raise bad_row_error(path, chunk, seen)
    return good, [
        json.dumps({"file": str(path), "id": r.id, "reason": r.reason}) + "\n" for r in chunk if r.text is None
    ]


def bad_row_error(path: Path, rows: list[Row], first_number: int) -> CorpusError:
    index, row = next((i, r) for i, r in enumerate(rows) if r.text is None)
    fix = "fix the input"
    if row.reason and "--truncation refuse" in row.reason:
        fix = "shorten it, let it be cut (--truncation right, the default)"
    elif row.reason and row.reason.startswith(("empty", "blank")):
        fix = "remove such lines"
    elif row.reason and " field (fields: " in row.reason:
        fix = "add the field, name the text field with --text-column,"
    return CorpusError(
        f"{path}: row {first_number + index} (id {row.id}): {row.reason}; {fix} or pass "
        "--on-bad-row skip to set such rows aside in _rejected.jsonl"
    )


def embed_files(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | EmbeddingModel = "jina-embedding-t-en-v1",
    precision: str = "auto",
    device: str = "auto",
    backend: str = "auto",
    batch_size: int | None = None,
    normalize: bool | None = None,
    text_column: str = "text",
    id_column: str | None = None,
    keep_text: bool = False,
    on_bad_row: str = "stop",
    overwrite: bool = False,
    show_progress: bool = False,
    threads: int | None = None,
    truncation: str = "right",
    output_precision: str = "float32",
) -> dict[str, Any]:
    """Embed every input file into OUTPUT (see the module docstring); returns the manifest it wrote.

    `truncation`: an input longer than the model takes is cut at its end ("right"), at its start ("left"), or
    is a bad row ("refuse": the job stops, or sets it aside with `on_bad_row="skip"`). The manifest counts
    the inputs that were cut.

    Example:
        >>> embed_files("corpus.txt", "vectors/", model="jina-embedding-t-en-v1", on_bad_row="skip")  # doctest: +SKIP
    """
    check_precision(output_precision)
    if truncation not in TRUNCATIONS:
        raise InputError(f"truncation={truncation!r} must be one of {', '.join(TRUNCATIONS)}")
    if on_bad_row not in ("stop", "skip"):
        raise InputError(f"on_bad_row={on_bad_row!r} must be 'stop' or 'skip'")
    files = discover(source)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    loaded = (
        model
        if isinstance(model, EmbeddingModel)
        else build_model(model, device=device, precision=precision, threads=threads, backend=backend)
    )
    settings = job_settings(
        loaded.manifest,
        loaded.variant.sha256,
        loaded.precision,
        normalize,
        text_column,
        id_column,
        keep_text,
        on_bad_row,
        truncation,
        output_precision,
    )
    remove_leftovers(out)
    started, clock = dt.datetime.now(dt.timezone.utc), time.perf_counter()
    shards: dict[str, dict[str, Any]] = {}
    embedded = 0
    tqdm = require("tqdm", "cpu") if show_progress else None
    bar = tqdm.tqdm(desc=f"embed {loaded.name}", unit="text", smoothing=0.1) if tqdm else None
    try:
        for path in files:
            target = out / shard_name(path)
            if target.exists() and not overwrite:
                shards[target.name] = finished_shard(target, settings)
                log.info("jina-onnx: %s is complete; skipped (--overwrite redoes it)", target.name)
                continue
            shards[target.name] = embed_shard(loaded, path, out, settings, batch_size, bar)
            embedded += shards[target.name]["rows"]
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - clock
    merge_rejected(out, [shard_name(p) for p in files])
    manifest = job_manifest(
        settings, loaded.dim, loaded.device, loaded.backend, shards, started, seconds, embedded, runner="local"
    )
    write_atomically(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def job_settings(
    manifest: Manifest,
    onnx_sha256: str,
    precision: str,
    normalize: bool | None,
    text_column: str,
    id_column: str | None,
    keep_text: bool,
    on_bad_row: str,
    truncation: str = "right",
    output_precision: str = "float32",
) -> JobSettings:
    """The settings of a job running `manifest`'s file `onnx_sha256` (both runners build them here)."""
    return JobSettings(
        manifest.name,
        onnx_sha256,
        precision,
        bool(manifest.normalize if normalize is None else normalize),
        text_column,
        id_column,
        keep_text,
        on_bad_row,
        truncation,
        output_precision,
    )


def embed_shard(
    model: EmbeddingModel, path: Path, out: Path, settings: JobSettings, batch_size: int | None, bar: Any
) -> dict[str, Any]:
    """Write one input file's shard (and its rejected rows) under temporary names, then rename both."""
    pq = require("pyarrow.parquet", "ray")
    target = out / shard_name(path)
    temporary = out / f".{target.name}.tmp-{os.getpid()}"
    rejected_part = out / REJECTED_PARTS / f"{target.name}.jsonl"
    rejected_temporary = rejected_part.with_name(f".{rejected_part.name}.tmp-{os.getpid()}")
    schema = output_schema(model.dim, settings.keep_text, settings.output_precision).with_metadata(
        {META_KEY: json.dumps(asdict(settings))}
    )
    rows = rejected = truncated = 0
    rejects: list[str] = []
    side = "left" if settings.truncation == "left" else "right"
    try:
        with pq.ParquetWriter(str(temporary), schema) as writer:
            for chunk in read_rows(path, settings.text_column, settings.id_column):
                chunk, over = _mark_long(model, chunk, settings.truncation)
                good, bad = split_rows(path, chunk, settings, rows + rejected)
                rejects += bad
                texts = [str(r.text) for r in good]
                truncated += over
                with warnings.catch_warnings():  # the manifest counts what was cut, once per job
                    warnings.simplefilter("ignore", TruncationWarning)
                    vectors = model.encode(
                        texts,
                        batch_size=batch_size,
                        normalize=settings.normalize,
                        truncation=side,
                        output_precision=settings.output_precision,
                    )
                writer.write_table(
                    to_table([r.id for r in good], vectors, texts if settings.keep_text else None, schema)
                )
                rows, rejected = rows + len(good), rejected + len(chunk) - len(good)
                if bar is not None:
                    bar.update(len(chunk))
        if rejects:
            rejected_part.parent.mkdir(exist_ok=True)
            rejected_temporary.write_text("".join(rejects), encoding="utf-8")
            os.replace(rejected_temporary, rejected_part)
        os.replace(temporary, target)  # the shard exists only once it is whole
    finally:
        temporary.unlink(missing_ok=True)
        rejected_temporary.unlink(missing_ok=True)
    return {"input": str(path), "rows": rows, "rejected": rejected, "truncated": truncated}


def _mark_long(model: EmbeddingModel, chunk: list[Row], truncation: str) -> tuple[list[Row], int]:
    """The chunk with rows over the model's tokens made bad rows when they are refused, and how many rows will
    be cut otherwise. Counting tokens costs a second tokenizer pass (a few percent of the embedding time)."""
    texts = [r.text for r in chunk if r.text is not None]
    lengths = iter(model.tokenizer.count(texts).tolist())
    limit = model.max_length
    marked, over = [], 0
    for row in chunk:
        tokens = next(lengths) if row.text is not None else 0
        if tokens > limit:
            over += 1
            if truncation == "refuse":
                row = Row(row.id, None, f"{tokens} tokens, over the model's limit of {limit} (--truncation refuse)")
        marked.append(row)
    return marked, over if truncation != "refuse" else 0


def finished_shard(target: Path, settings: JobSettings) -> dict[str, Any]:
    """Counts of a shard an earlier run finished; refuses one made with other settings."""
    pq = require("pyarrow.parquet", "ray")
    try:
        meta = pq.ParquetFile(str(target))
        made_with = json.loads(meta.schema_arrow.metadata[META_KEY])
    except Exception as error:  # unreadable or foreign: never reuse it silently
        raise CorpusError(f"{target}: exists but is not a jina-onnx shard ({error}); pass --overwrite") from error
    if made_with != asdict(settings):
        changed = sorted(k for k, v in asdict(settings).items() if made_with.get(k) != v)
        raise CorpusError(f"{target}: made with other settings ({', '.join(changed)}); pass --overwrite to redo it")
    rejected_part = target.parent / REJECTED_PARTS / f"{target.name}.jsonl"
    rejected = count_lines(rejected_part)
    return {"input": None, "rows": meta.metadata.num_rows, "rejected": rejected, "resumed": True}


def count_lines(path: Path) -> int:
    """Lines of a text file; 0 when it does not exist (no rejected rows)."""
    if not path.exists():
        return 0
    with open(path, encoding="utf-8") as handle:
        return sum(1 for _ in handle)


def merge_rejected(out: Path, shard_names: list[str]) -> None:
    """_rejected.jsonl = the rejected rows of every shard of this job, in input order (absent when none)."""
    parts = [out / REJECTED_PARTS / f"{name}.jsonl" for name in shard_names]
    text = "".join(p.read_text(encoding="utf-8") for p in parts if p.exists())
    if text:
        write_atomically(out / REJECTED, text)
    else:
        (out / REJECTED).unlink(missing_ok=True)


def job_manifest(
    settings: JobSettings,
    dim: int,
    device: str,
    backend: str,
    shards: dict[str, dict[str, Any]],
    started: dt.datetime,
    seconds: float,
    embedded: int,
    runner: str,
) -> dict[str, Any]:
    """`_manifest.json`: what made the output and what it holds (both runners write it)."""
    rows = sum(s["rows"] for s in shards.values())
    return {
        "model": settings.model,
        "artifact_sha256": settings.onnx_sha256,
        "precision": settings.precision,
        "dim": dim,
        "device": device,
        "backend": backend,
        "normalize": settings.normalize,
        "text_column": settings.text_column,
        "id_column": settings.id_column,
        "keep_text": settings.keep_text,
        "on_bad_row": settings.on_bad_row,
        "truncation": settings.truncation,
        "output_precision": settings.output_precision,
        "truncated_this_run": sum(s.get("truncated", 0) for s in shards.values()),
        "runner": runner,
        "rows": rows,
        "rejected": sum(s["rejected"] for s in shards.values()),
        "shards": shards,
        "started_at": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "embedded_this_run": embedded,
        "texts_per_s": round(embedded / seconds, 1) if seconds > 0 else None,
    }


def remove_leftovers(out: Path) -> None:
    """Temporary files of killed runs (their process is gone): never read, removed before a rerun."""
    for leftover in [*out.glob(".*.tmp-*"), *(out / REJECTED_PARTS).glob(".*.tmp-*")]:
        pid = leftover.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not process_alive(int(pid)):
            leftover.unlink(missing_ok=True)
