"""STS Benchmark dev pairs: the quality check and the realistic short-text workload."""

from __future__ import annotations

from pathlib import Path

import numpy as np

STS_DEV = Path(__file__).resolve().parent.parent / "data" / "sts-dev.tsv"


def load_sts(path: Path = STS_DEV) -> tuple[list[str], list[str], np.ndarray]:
    """(sentences1, sentences2, gold scores 0-5) from the tab-separated STS file."""
    first, second, scores = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        columns = line.split("\t")  # tabs only: sentences contain quotes
        scores.append(float(columns[4]))
        first.append(columns[5])
        second.append(columns[6])
    return first, second, np.asarray(scores)


def sts_spearman(embeddings1: np.ndarray, embeddings2: np.ndarray, scores: np.ndarray) -> float:
    """Spearman correlation x100 between pairwise cosine similarity and the gold scores."""
    from scipy.stats import spearmanr

    a = embeddings1 / np.linalg.norm(embeddings1, axis=1, keepdims=True)
    b = embeddings2 / np.linalg.norm(embeddings2, axis=1, keepdims=True)
    return float(spearmanr((a * b).sum(1), scores).statistic * 100)
