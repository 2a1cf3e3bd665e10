"""Text -> token ids with the Rust `tokenizers` library: truncation, counting what was cut, padding."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .errors import ArtifactError, require

IdArray = npt.NDArray[np.int64]
# How an input longer than the limit is handled: cut at the end (the default, as sentence-transformers does),
# cut at the start (keeps the last tokens), or refused with an error naming the input.
TRUNCATIONS = ("right", "left", "refuse")


@dataclass(frozen=True)
class TokenizedBatch:
    """Token ids of some texts, unpadded, in the caller's order."""

    ids: list[list[int]]  # one list of ids per text, special tokens included
    truncated: int  # how many texts were longer than max_length and were cut
    repaired: int = 0  # how many texts held lone surrogates, replaced by U+FFFD

    @property
    def lengths(self) -> npt.NDArray[np.int64]:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))


def replace_lone_surrogates(texts: list[str]) -> tuple[list[str], int]:
    """Texts with unpaired UTF-16 surrogates (not valid Unicode, which the Rust tokenizer refuses)
    turned into U+FFFD, and how many texts needed it. Valid text is returned as is."""
    repaired = 0
    out = texts
    for index, text in enumerate(texts):
        if text.isascii():
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            if out is texts:
                out = list(texts)
            # Round-trip through UTF-16 joins valid surrogate pairs and replaces the lone ones.
            out[index] = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            repaired += 1
    return out, repaired


class TextTokenizer:
    """A `tokenizers.Tokenizer` set up to truncate at the model maximum and never pad.

    Padding is done per batch in `pad` so each batch is only as long as its longest member.
    The object is safe to share between threads: a truncation length other than the default
    gets its own tokenizer copy instead of mutating the shared one.
    """

    def __init__(self, path: Path, max_length: int, pad_id: int) -> None:
        tokenizers = require("tokenizers", "cpu")
        try:
            base = tokenizers.Tokenizer.from_file(str(path))
        except Exception as e:  # the Rust side raises a bare Exception on a bad file
            raise ArtifactError(f"{path}: cannot be loaded as a tokenizer ({e}); re-export the model") from e
        self.path = path
        self.max_length = max_length
        self.pad_id = pad_id
        self.vocab_size: int = base.get_vocab_size(with_added_tokens=True)
        self._json = base.to_str()
        # One tokenizer per (max_length, side it cuts); 0: no truncation (for counting).
        self._by_length: dict[tuple[int, str], object] = {}
        self._spares: dict[int, list[object]] = {}  # private copies for worker threads, per max_length
        self._lock = threading.Lock()
        self._by_length[(max_length, "right")] = self._configure(base, max_length, "right")

    @staticmethod
    def _configure(tokenizer: object, max_length: int, side: str = "right") -> object:
        tokenizer.no_padding()  # type: ignore[attr-defined]
        if max_length:
            tokenizer.enable_truncation(max_length, direction=side)  # type: ignore[attr-defined]
        else:
            tokenizer.no_truncation()  # type: ignore[attr-defined]
        return tokenizer

    def _copy(self, max_length: int, side: str = "right") -> object:
        """A new tokenizer truncating at `max_length` (parsing one takes ~14 ms for a 30k vocabulary)."""
        tokenizers = require("tokenizers", "cpu")
        return self._configure(tokenizers.Tokenizer.from_str(self._json), max_length, side)

    def _for_length(self, max_length: int, side: str = "right") -> object:
        tokenizer = self._by_length.get((max_length, side))
        if tokenizer is None:
            with self._lock:
                tokenizer = self._by_length.get((max_length, side))
                if tokenizer is None:
                    tokenizer = self._by_length[(max_length, side)] = self._copy(max_length, side)
        return tokenizer

    def reserve(self, copies: int, max_length: int | None = None) -> None:
        """Make `copies` private tokenizers ahead of time, so the first call that tokenizes on worker
        threads does not wait for them."""
        limit = max_length or self.max_length
        with self._lock:
            spares = self._spares.setdefault(limit, [])
            while len(spares) < copies:
                spares.append(self._copy(limit))

    @contextlib.contextmanager
    def _private(self, max_length: int) -> Iterator[object]:
        """A tokenizer copy no other thread uses meanwhile, given back for the next call."""
        with self._lock:
            spares = self._spares.setdefault(max_length, [])
            tokenizer = spares.pop() if spares else None
        if tokenizer is None:
            tokenizer = self._copy(max_length)
        try:
            yield tokenizer
        finally:
            with self._lock:
                spares.append(tokenizer)

    def tokenize(
        self, texts: list[str], max_length: int | None = None, *, private: bool = False, side: str = "right"
    ) -> TokenizedBatch:
        """Token ids of each text, cut to `max_length` (default: the model maximum) at its end (`side="right"`)
        or its start (`"left"`: the last tokens are kept, special tokens stay where the model expects them).

        `private=True` runs on a tokenizer copy no other thread uses meanwhile, for callers that tokenize on
        several threads at once (the host path's workers): on many cores, separate instances scaled far
        better than one shared instance (huggingface/tokenizers #1900); two threads here scale either way.
        """
        limit = max_length or self.max_length
        texts, repaired = replace_lone_surrogates(texts)
        if side != "right":  # the host workers' private copies cut on the right, the default
            encodings = self._for_length(limit, side).encode_batch_fast(texts)  # type: ignore[attr-defined]
        elif private:
            with self._private(limit) as tokenizer:
                encodings = tokenizer.encode_batch_fast(texts)  # type: ignore[attr-defined]
        else:
            encodings = self._for_length(limit).encode_batch_fast(texts)  # type: ignore[attr-defined]
        # With truncation on, the Rust tokenizer keeps whatever it cut in `overflowing`.
        truncated = sum(1 for e in encodings if e.overflowing)
        return TokenizedBatch(ids=[e.ids for e in encodings], truncated=truncated, repaired=repaired)

    def count(self, texts: list[str]) -> npt.NDArray[np.int64]:
        """Each text's length in tokens without truncation, special tokens included."""
        texts, _ = replace_lone_surrogates(texts)
        encodings = self._for_length(0).encode_batch_fast(texts)  # type: ignore[attr-defined]
        return np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))

    def describe(self, texts: list[str], add_special_tokens: bool = True) -> list[list[dict[str, object]]]:
        """Each text's tokens, untruncated, as TEI's `/tokenize` shows them: id, text, special, and the
        character span (start, stop) in the text (None for special tokens)."""
        texts, _ = replace_lone_surrogates(texts)
        encodings = self._for_length(0).encode_batch(texts, add_special_tokens=add_special_tokens)  # type: ignore[attr-defined]
        return [
            [
                {
                    "id": i,
                    "text": token,
                    "special": bool(special),
                    "start": None if special else start,
                    "stop": None if special else stop,
                }
                for i, token, special, (start, stop) in zip(e.ids, e.tokens, e.special_tokens_mask, e.offsets)
            ]
            for e in encodings
        ]

    def pad(self, ids: list[list[int]], width: int | None = None) -> tuple[IdArray, IdArray]:
        """Right-pad to `width` (default: the longest sequence): (input_ids, attention_mask), (batch, width) int64."""
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))  # (batch,)
        width = width if width is not None else int(lengths.max(initial=0))
        if len(ids) and lengths.max() > width:
            raise ValueError(f"a sequence of {int(lengths.max())} tokens does not fit width {width}")
        filled = np.arange(width) < lengths[:, None]  # (batch, width), row-major like the flat ids below
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        # One vectorized scatter instead of a Python loop per row (it showed on CUDA, where the host is the limit).
        input_ids[filled] = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
        return input_ids, filled.astype(np.int64)
