"""`jina_onnx.ray`, the import path the README documents: the Ray runner lives in `jina_onnx.corpus.ray`."""

from .corpus.ray import check_capacity, embed_dataset, run_corpus_job

__all__ = ["check_capacity", "embed_dataset", "run_corpus_job"]
