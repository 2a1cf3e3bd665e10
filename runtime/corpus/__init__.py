"""`jina-onnx embed`: a corpus of files to Parquet shards of vectors, resumable, on one machine or on Ray.

- `job`: the readers, the shard writer and the local job (`embed_files`);
- `ray`: the same job on a Ray cluster (`run_corpus_job`) and `embed_dataset` for Ray Data pipelines
  (the `ray` extra; also importable as `jina_onnx.ray`).
"""

from .job import MANIFEST, REJECTED, CorpusError, JobSettings, embed_files

__all__ = ["MANIFEST", "REJECTED", "CorpusError", "JobSettings", "embed_files"]
