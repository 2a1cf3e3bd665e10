"""`EmbeddingModel`, an exported model loaded and ready to embed, and `encode`, the seed API's call on it.
`build_model` (build.py) makes one; `artifact.py` hands it the checked files."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import hostpath
from .artifact import checked_file, open_checked
from .batching import (
    DEVICE_DEFAULTS,
    IndexArray,
    bucket_length,
    plan_batches,
    sort_windows,
)
from .engines import KNOWN_INPUTS, Engine, SessionEngine, open_engine
from .errors import (
    ArtifactError,
    InputError,
    InputTooLongError,
    InputTypeError,
    require,
)
from .hostpath import ChunkStart, PreparedBatch
from .machine import physical_cores
from .manifest import (
    Manifest,
    Variant,
)
from .pooling import pool
from .quantize import check_precision, quantize
from .similarity import FloatArray, l2_normalize
from .tokenization import TRUNCATIONS, TextTokenizer, TokenizedBatch

log = logging.getLogger("jina_onnx")

# Whether `pipeline=None` overlaps host and device work on CPU too. No: on the 2-core Xeon, pipelined vs
# serial t int8 was 0.98x (short text) and 1.01x (128 tokens) in one run of `python -m benchmarks.ab`; the
# producer thread competes with ONNX Runtime for the same cores, and there is no device to keep busy.
PIPELINE_ON_CPU = False


class TruncationWarning(UserWarning):
    """Some inputs were longer than the model maximum and were cut."""


class EmbeddingModel:
    """An exported model loaded into an ONNX Runtime session, ready to embed text.

    Build it with `build_model`. One instance is safe to share between threads: every call
    tokenizes and binds its own buffers, and ONNX Runtime sessions allow concurrent `run`.

    With host workers (the default on CUDA: `host_workers`), worker threads tokenize and pad the next
    batches while the device runs the current one; outputs are the same as without them.

    Example:
        >>> from jina_onnx import build_model
        >>> model = build_model("jina-embedding-t-en-v1")
        >>> model.encode(["how is the weather today"]).shape
        (1, 312)
    """

    def __init__(
        self,
        directory: Path,
        manifest: Manifest,
        variant: Variant,
        device: str,
        threads: int | None,
        device_id: int = 0,
        io_binding: bool | None = None,
        pipeline: bool | None = None,
        allow_spinning: bool = True,
        backend: str = "onnxruntime",
        precision: str | None = None,
        host_workers: int | None = None,
        engine: Engine | None = None,
        tokenizer: TextTokenizer | None = None,
    ):
        self.directory = directory
        self.manifest = manifest
        # OpenVINO's bf16 runs an fp32 file: the precision is then not the variant's.
        self.precision = precision or variant.precision.value
        self.variant = variant  # the manifest entry of the ONNX file that runs
        self.backend = backend
        self.device = device
        self.device_id = device_id
        # A tokenizer already opened from this artifact (one per first load, not one per candidate) is reused.
        self.tokenizer = tokenizer or TextTokenizer(
            checked_file(directory, manifest.tokenizer.file, manifest.tokenizer.sha256),
            manifest.max_length,
            manifest.tokenizer.pad_id,
        )
        if self.tokenizer.vocab_size != manifest.tokenizer.vocab_size:
            raise ArtifactError(
                f"{self.tokenizer.path}: vocabulary has {self.tokenizer.vocab_size} tokens but the manifest "
                f"says {manifest.tokenizer.vocab_size}; the tokenizer belongs to another model: re-export"
            )

        def session(path: Path) -> Engine:
            return engine or open_engine(
                path,
                variant.sha256,
                backend,
                device,
                precision=self.precision,
                threads=threads,
                device_id=device_id,
                allow_spinning=allow_spinning,
                io_binding=io_binding,
            )

        # The graph (fetched first from a Hub id) is checked against the manifest while its session builds.
        self.onnx_path, self.engine = open_checked(directory, variant.file, variant.sha256, session)
        unknown = set(self.engine.input_names) - set(KNOWN_INPUTS)
        if unknown:
            raise ArtifactError(f"{self.onnx_path}: unexpected graph inputs {sorted(unknown)}; expected {KNOWN_INPUTS}")
        width = getattr(self.engine, "width", None)
        if isinstance(width, int) and width != manifest.dim:
            raise ArtifactError(
                f"{self.onnx_path}: graph output {getattr(self.engine, 'output', '')!r} has width {width} but the "
                f"manifest says dim {manifest.dim}; the ONNX file belongs to another model: re-export"
            )
        self.host_workers = _host_workers(device, threads, pipeline, host_workers)
        self.tokenizer.reserve(self.host_workers)  # one private tokenizer per worker thread
        self.default_batch_size, self.default_token_budget = DEVICE_DEFAULTS[device]

    @property
    def pipeline(self) -> bool:
        """Whether host work (tokenizing, padding, copies) runs on worker threads beside the device."""
        return self.host_workers > 0

    @property
    def session(self) -> Any:
        """The ONNX Runtime (or OpenVINO) session that runs the graph."""
        return self.engine.session  # type: ignore[attr-defined]

    @session.setter
    def session(self, session: Any) -> None:
        self.engine = SessionEngine(
            session,
            device=self.device,
            device_id=self.device_id,
            io_binding=getattr(self.engine, "io_binding", None),
            pads_lone_text=self.engine.pads_lone_text,
        )

    @property
    def io_binding(self) -> bool:
        """On CUDA, inputs are copied to the GPU on the host path and only the pooled output comes back."""
        return bool(getattr(self.engine, "io_binding", False))

    @io_binding.setter
    def io_binding(self, value: bool) -> None:
        self.engine.io_binding = value  # type: ignore[attr-defined]

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def dim(self) -> int:
        return self.manifest.dim

    @property
    def max_length(self) -> int:
        return self.manifest.max_length

    def __repr__(self) -> str:
        return (
            f"EmbeddingModel(name={self.name!r}, dim={self.dim}, precision={self.precision!r}, "
            f"device={self.device!r}, backend={self.backend!r}, path={str(self.onnx_path)!r})"
        )

    def encode(
        self,
        data: Sequence[str],
        *,
        batch_size: int | None = None,
        normalize: bool | None = None,
        max_length: int | None = None,
        show_progress: bool = False,
        token_budget: int | None = None,
        truncation: str = "right",
        output_precision: str = "float32",
    ) -> FloatArray:
        """Embed texts; returns float32 of shape (len(data), dim) in the caller's order (or `output_precision`).

        Texts are tokenized, sorted by length (in windows: `sort_windows`) and cut
        into batches of at most `batch_size` texts and `token_budget` padded tokens, so short texts are
        never padded to long ones.

        Args:
            data: the texts. An empty string is a valid text; an empty list gives shape (0, dim).
            batch_size: at most this many texts per ONNX Runtime call; None: 32 on CPU, 256 on CUDA.
            normalize: L2-normalize the rows. None follows the model (a Normalize module in the
                checkpoint means yes; the four Jina v1 models have none).
            max_length: truncate at this many tokens (special tokens included); at most the model's.
            show_progress: draw a tqdm progress bar counting texts.
            token_budget: at most this many tokens (batch x padded length) per call; None: 8,192 on CPU,
                65,536 on CUDA.
            truncation: an input longer than `max_length` is cut at its end ("right", the default: one
                TruncationWarning per call says how many), at its start ("left": its last tokens are kept), or
                refused ("refuse": `InputTooLongError` naming the first such input and its token count).
            output_precision: the vectors' type: "float32" (default), "float16", "int8" / "uint8" (per-dimension
                buckets calibrated at export), "binary" / "ubinary" (one bit per dimension, packed: dim / 8
                bytes); `jina_onnx.quantize`, bit-identical to sentence-transformers' `quantize_embeddings`.

        Example:
            >>> model.encode(["how is the weather today", "What is the current weather like today?"]).shape
            (2, 312)
        """
        texts = _check_texts(data)
        batch_size, limit, token_budget, side = self._check_options(batch_size, max_length, token_budget, truncation)
        check_precision(output_precision)
        if truncation == "refuse":
            self._refuse_long(texts, limit)
        windows, parallel = self._windows(len(texts), batch_size)
        chunks = (texts[start:end] for start, end in windows)
        out = np.empty((len(texts), self.dim), dtype=np.float32)  # (n, dim); windows fill it in order
        truncated = 0
        with _progress(show_progress, len(texts), f"encode {self.name}") as bar:
            for _, cut in self._embed_chunks(
                chunks, batch_size, limit, token_budget, bar, parallel, into=out, side=side
            ):
                truncated += cut
        self._warn_truncated(truncated, len(texts), limit)
        return self.postprocess(out, normalize, output_precision)

    def encode_iter(
        self,
        texts: Iterable[str],
        *,
        chunk_size: int = 4096,
        batch_size: int | None = None,
        normalize: bool | None = None,
        max_length: int | None = None,
        show_progress: bool = False,
        token_budget: int | None = None,
        truncation: str = "right",
        output_precision: str = "float32",
    ) -> Iterator[FloatArray]:
        """Embed a stream of texts, yielding one (n <= chunk_size, dim) array per `chunk_size` texts.

        Memory stays bounded by the chunk however long the stream is; rows come in input order.
        Options are those of `encode`; one TruncationWarning is issued at the end of the stream.

        Example:
            >>> with open("corpus.txt") as f:  # a file the reader has  # doctest: +SKIP
            ...     for vectors in model.encode_iter(line.rstrip("\\n") for line in f):
            ...         index.add(vectors)
        """
        if isinstance(texts, (str, bytes)) or not isinstance(texts, Iterable):
            raise InputTypeError(f"texts must be an iterable of strings, got {type(texts).__name__}")
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise InputError(f"chunk_size={chunk_size!r} must be a positive integer")
        batch_size, limit, token_budget, side = self._check_options(batch_size, max_length, token_budget, truncation)
        check_precision(output_precision)
        total = len(texts) if isinstance(texts, Sized) else None
        chunks = _checked_chunks(iter(texts), chunk_size)
        if truncation == "refuse":
            chunks = self._refusing(chunks, limit)
        seen = truncated = 0
        with _progress(show_progress, total, f"encode {self.name}") as bar:
            for out, cut in self._embed_chunks(
                chunks, batch_size, limit, token_budget, bar, self.host_workers > 0, side=side
            ):
                seen, truncated = seen + len(out), truncated + cut
                yield self.postprocess(out, normalize, output_precision)
        self._warn_truncated(truncated, seen, limit)

    def embed_token_ids(
        self, ids: list[list[int]], *, token_budget: int | None = None, batch_size: int | None = None
    ) -> FloatArray:
        """Embed already tokenized texts (from `model.tokenizer.tokenize`), float32 (len(ids), dim), not
        normalized, in the given order. For callers that batch by token counts themselves (the server):
        the same length sorting, bucketing and budget as `encode`, without tokenizing twice. `batch_size`
        caps the texts per ONNX call (default: all of them, within the token budget).

        Example:
            >>> tokens = model.tokenizer.tokenize(["a text", "another one"])
            >>> model.embed_token_ids(tokens.ids).shape
            (2, 312)
        """
        budget = self.default_token_budget if token_budget is None else token_budget
        out = np.empty((len(ids), self.dim), dtype=np.float32)  # (n, dim)
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        for rows in plan_batches(lengths, batch_size or len(ids) or 1, budget, self.max_length):
            out[rows] = self.run_batch(self._pad_batch([ids[i] for i in rows], rows, lone=len(ids) == 1))
        return out

    def warmup(self, batch_sizes: Sequence[int] = (1, 32), lengths: Sequence[int] = (16, 64, 128, 512)) -> None:
        """Run the common shapes once, so the first real calls don't pay for kernel selection and
        memory allocation (most visible on CUDA, where `build_model` calls this by default)."""
        for batch in batch_sizes:
            for length in lengths:
                length = min(length, self.max_length)
                self.run_batch(self._pad_batch([[self.manifest.tokenizer.pad_id + 1] * length] * batch))

    def prepare_batches(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        token_budget: int | None = None,
        max_length: int | None = None,
        truncation: str = "right",
    ) -> list[PreparedBatch]:
        """The batches `encode` would run for `texts`, tokenized, padded and placed on the device, in the
        order `encode` runs them; each batch's `rows` are positions in `texts`.

        The same windows and plan as `encode` (with host workers too), with the host work done here in the
        calling thread: with `run_batch`, this times the engine alone on exactly the work `encode` gives it
        (the benchmarks' ceiling for `encode`). Options are those of `encode`.

        Example:
            >>> batches = model.prepare_batches(["a text", "another one"])
            >>> sum(len(model.run_batch(b)) for b in batches)
            2
        """
        texts = _check_texts(texts)
        batch_size, limit, token_budget, side = self._check_options(batch_size, max_length, token_budget, truncation)
        if truncation == "refuse":
            self._refuse_long(texts, limit)
        batches = []
        for start, end in self._windows(len(texts), batch_size)[0]:
            stream = hostpath.serial(
                iter([texts[start:end]]),
                lambda window: self.tokenizer.tokenize(window, limit, side=side),
                self._planner(batch_size, token_budget),
                self._pad_batch,
            )
            batches += [
                dataclasses.replace(item, rows=item.rows + start)
                for item in stream
                if isinstance(item, PreparedBatch) and item.rows is not None
            ]
        return batches

    def count_tokens(
        self, texts: Sequence[str], *, max_length: int | None = None, truncation: str = "right"
    ) -> npt.NDArray[np.int64]:
        """How many tokens `encode` embeds for each text (special tokens included): its length, or the limit
        for a text that is cut. With `truncation="refuse"`, a text over the limit raises as `encode` would.

        Example:
            >>> model.count_tokens(["how is the weather today", "word " * 1000]).tolist()
            [7, 512]
        """
        texts = _check_texts(texts)
        _, limit, _, _ = self._check_options(None, max_length, None, truncation)
        lengths = self.tokenizer.count(texts)
        if truncation == "refuse":
            self._refuse_long(texts, limit, lengths=lengths)
        return np.minimum(lengths, limit)

    def run_batch(self, batch: PreparedBatch) -> FloatArray:
        """Embed one prepared batch on the engine: float32 (rows, dim), not normalized.

        Example:
            >>> [model.run_batch(b).shape for b in model.prepare_batches(["a text"])]
            [(1, 312)]
        """
        result = self.engine.run(batch.feed)
        if self.engine.pooled:
            return result  # (batch, dim)
        return pool(result, batch.attention_mask, self.manifest.pooling)  # (batch, seq, dim) -> (batch, dim)

    def _check_options(
        self, batch_size: int | None, max_length: int | None, token_budget: int | None, truncation: str = "right"
    ) -> tuple[int, int, int, str]:
        """(batch_size, max_length, token_budget, side the tokenizer cuts), with None replaced by this device's
        defaults."""
        if truncation not in TRUNCATIONS:
            raise InputError(f"truncation={truncation!r} is not one of {', '.join(TRUNCATIONS)}")
        side = "left" if truncation == "left" else "right"  # "refuse" cuts nothing: long inputs never get here
        batch_size = self.default_batch_size if batch_size is None else batch_size
        token_budget = self.default_token_budget if token_budget is None else token_budget
        for name, value in (("batch_size", batch_size), ("token_budget", token_budget)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name}={value!r} must be a positive integer")
        if max_length is None:
            return batch_size, self.max_length, token_budget, side
        if not isinstance(max_length, int) or isinstance(max_length, bool) or not 1 < max_length <= self.max_length:
            raise InputError(
                f"max_length={max_length!r} must be an integer from 2 to the model maximum {self.max_length}"
            )
        return batch_size, max_length, token_budget, side

    def _refuse_long(self, texts: list[str], limit: int, offset: int = 0, lengths: Any = None) -> None:
        """InputTooLongError naming the first text over `limit` tokens (truncation="refuse")."""
        lengths = self.tokenizer.count(texts) if lengths is None else lengths
        over = np.flatnonzero(lengths > limit)
        if len(over):
            index = int(over[0])
            raise InputTooLongError(
                f"data[{index + offset}] has {int(lengths[index])} tokens, over the model's limit of {limit}"
                f"{f' ({len(over)} inputs are)' if len(over) > 1 else ''}; shorten it, or pass truncation='right' "
                "(or truncation='left') to cut it",
                index=index + offset,
                tokens=int(lengths[index]),
                limit=limit,
            )

    def _refusing(self, chunks: Iterator[list[str]], limit: int) -> Iterator[list[str]]:
        offset = 0
        for chunk in chunks:
            self._refuse_long(chunk, limit, offset)
            offset += len(chunk)
            yield chunk

    def _embed_chunks(
        self,
        chunks: Iterator[list[str]],
        batch_size: int,
        limit: int,
        token_budget: int,
        bar: Any,
        parallel: bool,
        into: FloatArray | None = None,
        side: str = "right",
    ) -> Iterator[tuple[FloatArray, int]]:
        """(embeddings, texts truncated) per chunk, in order. The host work runs on `host_workers` threads
        beside the device when `parallel`, else in this thread between device calls; for the same chunks
        the batches, and so the outputs, are the same either way. With `into`, the chunks' rows are
        written there, one after another, and the chunk arrays yielded are views of it."""
        plan = self._planner(batch_size, token_budget)
        if parallel:
            stream = hostpath.parallel(
                chunks,
                lambda window: self.tokenizer.tokenize(window, limit, private=True, side=side),
                plan,
                self._pad_batch,
                workers=self.host_workers,
                slice_size=batch_size,
            )
        else:
            stream = hostpath.serial(
                chunks, lambda window: self.tokenizer.tokenize(window, limit, side=side), plan, self._pad_batch
            )
        out: FloatArray | None = None
        truncated = filled = offset = 0
        try:
            for item in stream:
                if isinstance(item, ChunkStart):
                    if into is None:
                        out = np.empty((item.size, self.dim), dtype=np.float32)  # (n, dim)
                    else:
                        out, offset = into[offset : offset + item.size], offset + item.size
                    truncated, filled = item.truncated, 0
                    if item.repaired:
                        warnings.warn(
                            f"{item.repaired} of {item.size} inputs contained lone surrogates (invalid "
                            "Unicode); they were replaced by U+FFFD before embedding",
                            UnicodeWarning,
                            stacklevel=4,
                        )
                    continue
                assert out is not None and item.rows is not None  # a window starts before its batches
                out[item.rows] = self.run_batch(item)
                filled += len(item.rows)
                if bar is not None:
                    bar.update(len(item.rows))
                if filled == len(out):
                    yield out, truncated  # as soon as it is complete, not when the next chunk starts
        finally:
            stream.close()  # stops and joins the host workers if we stop early

    def _windows(self, count: int, batch_size: int) -> tuple[list[tuple[int, int]], bool]:
        """The windows of a call of `count` texts, and whether its host work runs on the workers (not for
        one batch: starting threads would cost more than it saves).

        Windows ramp up from one batch (`sort_windows`) only where host workers feed a GPU. On a CPU the
        "device" is ONNX Runtime on the same cores, and the ramp's smaller windows would only pad more (t int8,
        STS sentences: 0.89x with the ramp, same run), so the windows stay those of the serial path.
        """
        parallel = self.host_workers > 0 and count > batch_size
        return sort_windows(count, batch_size, ramp=parallel and self.device == "cuda"), parallel

    def _planner(self, batch_size: int, token_budget: int) -> Callable[[TokenizedBatch], list[IndexArray]]:
        return lambda tokens: plan_batches(tokens.lengths, batch_size, token_budget, self.max_length)

    def _pad_batch(self, ids: list[list[int]], rows: IndexArray | None = None, lone: bool = False) -> PreparedBatch:
        # Buckets keep the number of distinct shapes small for batches. A call with one text (`lone`) needs no
        # padding at all, and padding it costs batch-1 latency (+20% at p50 on short sentences, t fp32,
        # measured). A text the planner puts alone in a batch of a bigger call is still padded to its bucket,
        # so its vector does not depend on its neighbours (unpadded differs by ~1e-6). OpenVINO pads lone texts
        # too: it keeps kernels for every shape it sees (engines/openvino.py, row_bucket).
        exact = lone and not self.engine.pads_lone_text
        width = len(ids[0]) if exact else bucket_length(max(len(x) for x in ids), self.max_length)
        input_ids, attention_mask = self.tokenizer.pad(ids, width)  # (batch, width) each
        feed: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.engine.input_names:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        # With I/O binding this copies to the device: on a host worker when there are some, so the copy
        # overlaps the previous batch's compute.
        return PreparedBatch(
            rows, self.engine.place({name: feed[name] for name in self.engine.input_names}), attention_mask
        )

    def postprocess(self, out: FloatArray, normalize: bool | None, output_precision: str = "float32") -> FloatArray:
        """What `encode` does to the float32 rows the engine gives: normalize (None: as the model declares), then
        convert to `output_precision` (for callers that embed token ids themselves, as the server does).

        Example:
            >>> model.postprocess(model.embed_token_ids([[101, 2023, 102]]), None, "ubinary").shape
            (1, 39)
        """
        check_precision(output_precision)
        normalized = normalize if normalize is not None else self.manifest.normalize
        out = l2_normalize(out) if normalized else out
        if output_precision == "float32":
            return out
        ranges = self.manifest.output_ranges.get("normalized" if normalized else "raw")
        return quantize(out, output_precision, None if ranges is None else np.asarray(ranges, dtype=np.float32))

    @staticmethod
    def _warn_truncated(truncated: int, total: int, limit: int) -> None:
        if truncated:
            warnings.warn(
                f"{truncated} of {total} inputs were longer than {limit} tokens and were truncated",
                TruncationWarning,
                stacklevel=3,
            )


def encode(
    model: EmbeddingModel,
    data: Sequence[str],
    *,
    batch_size: int | None = None,
    normalize: bool | None = None,
    max_length: int | None = None,
    show_progress: bool = False,
    token_budget: int | None = None,
    truncation: str = "right",
    output_precision: str = "float32",
) -> FloatArray:
    """Embed texts with `model`: the seed API, same as `model.encode(data, ...)`.

    Example:
        >>> embeddings = encode(model=model, data=["how is the weather today"])
        >>> embeddings.shape
        (1, 312)
    """
    if not isinstance(model, EmbeddingModel):
        raise InputTypeError(f"model must be an EmbeddingModel from build_model(...), got {type(model).__name__}")
    return model.encode(
        data,
        batch_size=batch_size,
        normalize=normalize,
        max_length=max_length,
        show_progress=show_progress,
        token_budget=token_budget,
        truncation=truncation,
        output_precision=output_precision,
    )


def _host_workers(device: str, threads: int | None, pipeline: bool | None, host_workers: int | None) -> int:
    """How many threads do the host work beside the device (0: the calling thread does it)."""
    if host_workers is not None:
        if not isinstance(host_workers, int) or isinstance(host_workers, bool) or host_workers < 0:
            raise InputError(f"host_workers={host_workers!r} must be a non-negative integer (0: no worker threads)")
        if pipeline is False and host_workers > 0:
            raise InputError(
                f"pipeline=False keeps the host work in the calling thread but host_workers="
                f"{host_workers} asks for worker threads; pass only one of them"
            )
        return host_workers
    if not (pipeline if pipeline is not None else device == "cuda" or PIPELINE_ON_CPU):
        return 0
    return max(1, hostpath.default_workers(device, threads or physical_cores()))


def _checked_chunks(texts: Iterator[object], chunk_size: int) -> Iterator[list[str]]:
    seen = 0
    while chunk := list(itertools.islice(texts, chunk_size)):
        yield _check_texts(chunk, offset=seen)
        seen += len(chunk)


def _check_texts(data: object, offset: int = 0) -> list[str]:
    if isinstance(data, (str, bytes)):
        raise InputTypeError(f"data must be a list of strings, got a single {type(data).__name__}; wrap it: [text]")
    if not isinstance(data, Sequence) and not isinstance(data, np.ndarray):
        raise InputTypeError(f"data must be a list of strings, got {type(data).__name__}")
    texts = list(data)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            kind = "None" if text is None else type(text).__name__
            raise InputTypeError(
                f"data[{index + offset}] is {kind}, not a string; pass only str items (use '' for empty)"
            )
    return texts


@contextlib.contextmanager
def _progress(enabled: bool, total: int | None, desc: str) -> Iterator[Any]:
    """A tqdm bar counting texts, or None when disabled."""
    if not enabled:
        yield None
        return
    tqdm = require("tqdm", "cpu")
    with tqdm.tqdm(total=total, desc=desc, unit="text") as bar:
        yield bar
