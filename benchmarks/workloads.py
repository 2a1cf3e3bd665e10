"""The texts every runner of the suite embeds: short sentences, long passages, exact-length inputs.

All three are built from STS-dev sentences, deterministically (seeded), and measured with the model's own
tokenizer, so every runtime sees the same strings and the token counts hold for all of them.
"""

from __future__ import annotations

import random

from .sts import load_sts


def sts_sentences() -> list[str]:
    """The 3,000 STS-dev sentences (first column, then second), in file order."""
    first, second, _ = load_sts()
    return first + second


def short_texts(count: int) -> list[str]:
    """The first `count` STS-dev sentences (all of them when count is 0): 5-40 tokens each."""
    sentences = sts_sentences()
    return sentences[:count] if count else sentences


def _count(tokenizer, text: str) -> int:  # type: ignore[no-untyped-def]
    return int(tokenizer.tokenize([text]).lengths[0])


def long_passages(tokenizer, count: int, low: int = 400, high: int = 511, seed: int = 0) -> list[str]:  # type: ignore[no-untyped-def]
    """`count` passages of `low`..`high` tokens (special tokens included), from joined STS sentences.

    `high` stays under 512 so no runtime truncates them and all embed exactly the same tokens.
    """
    sentences = sts_sentences()
    rng = random.Random(seed)
    passages = []
    while len(passages) < count:
        target = rng.randint(low, high)
        words: list[str] = []
        while _count(tokenizer, " ".join(words)) < target:
            words += rng.choice(sentences).split()
        while _count(tokenizer, " ".join(words)) > target:
            words.pop()
        text = " ".join(words)
        if low <= _count(tokenizer, text) <= high:
            passages.append(text)
    return passages


def fixed_length_texts(tokenizer, count: int, length: int = 128, seed: int = 1) -> list[str]:  # type: ignore[no-untyped-def]
    """`count` different texts of exactly `length` tokens each (special tokens included)."""
    sentences = sts_sentences()
    rng = random.Random(seed)
    texts: list[str] = []
    while len(texts) < count:
        words: list[str] = []
        while _count(tokenizer, " ".join(words)) < length:
            words += rng.choice(sentences).split()
        while _count(tokenizer, " ".join(words)) > length:
            words.pop()
        while _count(tokenizer, " ".join(words)) < length:
            words.append("the")  # one token in both the WordPiece and the SentencePiece vocabularies
        text = " ".join(words)
        if _count(tokenizer, text) == length:
            texts.append(text)
    return texts
