"""Length-bucketed batching, streaming, threads, I/O binding and provider selection."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.sts import load_sts
from jina_onnx import DeviceError, InputError, InputTypeError, build_model
from jina_onnx.batching import bucket_length, plan_batches


def mixed_corpus(n: int = 120, seed: int = 0) -> list[str]:
    first, second, _ = load_sts()
    sentences = first + second
    rng = random.Random(seed)
    texts = [rng.choice(sentences) for _ in range(n)]
    for i in range(0, n, 10):  # passages of 100-600 tokens among the short sentences
        texts[i] = " ".join(rng.choice(sentences) for _ in range(rng.randint(8, 50)))
    rng.shuffle(texts)
    return texts


def test_plan_batches_respects_budget_and_covers_everything() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 513, size=500)
    batches = plan_batches(lengths, batch_size=32, token_budget=4096, limit=512)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(500))
    for batch in batches:
        width = bucket_length(int(lengths[batch].max()), 512)
        assert len(batch) <= 32 and (len(batch) * width <= 4096 or len(batch) == 1)
    assert len({bucket_length(n, 512) for n in range(1, 513)}) == 22  # few distinct shapes


def test_sorted_budgeted_batches_equal_one_by_one(t_model) -> None:
    texts = mixed_corpus()
    with pytest.warns(UserWarning):
        one_by_one = np.stack([t_model.encode([t], batch_size=1)[0] for t in texts])
        for batch_size, budget in ((32, 8192), (7, 1000), (128, 100_000)):
            batched = t_model.encode(texts, batch_size=batch_size, token_budget=budget)
            assert np.abs(batched - one_by_one).max() < 1e-5, (batch_size, budget)


def test_encode_iter_matches_encode_and_keeps_order(t_model) -> None:
    texts = mixed_corpus(200, seed=1)
    with pytest.warns(UserWarning):
        whole = t_model.encode(texts)
    with pytest.warns(UserWarning) as record:
        chunks = list(t_model.encode_iter(iter(texts), chunk_size=64))
    assert [len(c) for c in chunks] == [64, 64, 64, 8]
    assert np.abs(np.concatenate(chunks) - whole).max() < 1e-5
    assert len(record) == 1  # one warning for the whole stream
    with pytest.raises(InputTypeError, match=r"data\[70\] is None"):
        list(t_model.encode_iter(texts[:70] + [None], chunk_size=64))
    with pytest.raises(InputError, match="chunk_size=0"):
        list(t_model.encode_iter(texts, chunk_size=0))
    with pytest.raises(InputTypeError, match="iterable of strings"):
        list(t_model.encode_iter("not a list"))


def test_progress_bar_counts_texts(t_model, capsys) -> None:
    t_model.encode(["a", "b", "c"], show_progress=True)
    err = capsys.readouterr().err
    assert "3/3" in err and "text" in err
    list(t_model.encode_iter((str(i) for i in range(10)), chunk_size=4, show_progress=True))
    assert "10" in capsys.readouterr().err


def test_threads_share_one_model(artifact) -> None:
    model = build_model(artifact("t"), device="cpu")  # int8, the CPU default
    corpora = [mixed_corpus(40, seed=s) for s in range(8)]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sequential = [model.encode(c, batch_size=8) for c in corpora]
        results: list[np.ndarray | None] = [None] * 8
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                for _ in range(3):
                    results[i] = model.encode(corpora[i], batch_size=8)
            except BaseException as e:  # surfaced below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    for got, want in zip(results, sequential):
        assert got is not None and np.abs(got - want).max() < 1e-6


def test_io_binding_path_gives_the_same_result(artifact) -> None:
    texts = mixed_corpus(30)
    plain = build_model(artifact("t"), device="cpu", precision="fp32")
    bound = build_model(artifact("t"), device="cpu", precision="fp32")
    bound.io_binding = True
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.abs(bound.encode(texts) - plain.encode(texts)).max() < 1e-6


def test_default_threads_are_the_physical_cores(t_model) -> None:
    from jina_onnx.machine import physical_cores

    cores = physical_cores()
    assert 1 <= cores <= (len(__import__("os").sched_getaffinity(0)))
    assert t_model.session.get_session_options().intra_op_num_threads == cores
    assert (
        build_model(t_model.directory, threads=1, precision="fp32").session.get_session_options().intra_op_num_threads
        == 1
    )


def test_auto_falls_back_to_cpu_when_cuda_cannot_start(artifact, monkeypatch, caplog) -> None:
    import onnxruntime

    import jina_onnx.engines.onnxruntime as session_module

    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(session_module, "missing_cuda_libraries", lambda: ["libcudnn.so.9"])
    with pytest.raises(DeviceError, match="missing libraries: libcudnn.so.9"):
        build_model(artifact("t"), device="cuda")
    with caplog.at_level(logging.WARNING, logger="jina_onnx"):
        model = build_model(artifact("t"), device="auto")
    assert model.device == "cpu" and model.backend == "onnxruntime"
    assert any("falling back to CPU" in r.getMessage() for r in caplog.records)


def test_cuda_session_options_are_requested(artifact, monkeypatch) -> None:
    """With the provider list mocked, the CUDA session asks for the device id and no TF32 on fp32."""
    import onnxruntime

    import jina_onnx.engines.onnxruntime as session_module

    seen = {}
    real = onnxruntime.InferenceSession

    class Recording(real):  # type: ignore[misc, valid-type]
        def __init__(self, path, sess_options=None, providers=None):
            seen["providers"] = providers
            super().__init__(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

        def get_providers(self):
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    monkeypatch.setattr(onnxruntime, "InferenceSession", Recording)
    session_module.create_session(artifact("t") / "onnx" / "model.onnx", "cuda", None, device_id=3, precision="fp32")
    assert seen["providers"][0] == ("CUDAExecutionProvider", {"device_id": "3", "use_tf32": "0"})
    session_module.create_session(artifact("t") / "onnx" / "model_fp16.onnx", "cuda", None, precision="fp16")
    assert seen["providers"][0][1]["use_tf32"] == "1"


RSS_PROBE = """
import gc, json, sys, warnings
from jina_onnx import build_model

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

model = build_model(sys.argv[1], device="cpu")
mode, size, step = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = int(sys.argv[5]) if len(sys.argv) > 5 else 16
samples = []
if mode == "stream":  # `size` texts in chunks of `step`
    texts = (f"short text number {i}" for i in range(size))
    for n, chunk in enumerate(model.encode_iter(texts, chunk_size=step)):
        samples.append(rss_mb())
else:  # every `step`-th length from 1 to 512 tokens, three times over
    warnings.simplefilter("ignore")
    for _ in range(3):
        for n in range(1, 513, 6 * step):
            model.encode(["word " * n] * rows)
        for n in range(1, 513, step):  # a lone text runs unpadded: every length is its own shape
            model.encode(["word " * n])
        samples.append(rss_mb())
print(json.dumps(samples))
"""


def rss_samples(artifact_dir: Path, mode: str, size: int = 0, step: int = 1, rows: int = 16) -> list[float]:
    result = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, str(artifact_dir), mode, str(size), str(step), str(rows)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_streaming_200k_texts_keeps_memory_flat(artifact, sized) -> None:
    # What it guards: encode_iter holding what it yielded, or reading the whole stream first. Either grows RSS
    # by at least the vectors of every text (312 floats each); 32,768 texts in 32 chunks make that 39 MB,
    # far over the bound, and the quick run still sees 28 chunks after memory settles.
    texts = int(sized(32_768, 200_000, "texts streamed"))
    chunk = 1024 if texts < 200_000 else 4096
    samples = rss_samples(artifact("t"), "stream", texts, chunk)
    assert len(samples) == -(-texts // chunk)  # 32 chunks; with --full, 200,000 / 4,096: 49
    settled = samples[4]
    bound = 12 if texts < 200_000 else 25  # MB; the held vectors alone: 39 MB (quick), 240 MB (full)
    assert max(samples[4:]) - settled < bound, samples


def test_memory_does_not_grow_with_new_shapes(artifact, sized) -> None:
    # What it guards: memory that grows call after call over ever-new shapes. Passes 2 and 3 repeat pass 1's
    # shapes and grew by 0.1 MB here; the bound is per call, so the quick run (a third of the lengths, batches of
    # 4 rows instead of 16: still a new shape each) catches the same leak as the full one: 10 kB kept per call
    # fails both.
    step = int(sized(3, 1, "every n-th length from 1 to 512 tokens"))
    rows = int(sized(4, 16, "rows in the batches of each length"))
    first, second, third = rss_samples(artifact("t"), "shapes", step=step, rows=rows)
    calls = 2 * (len(range(1, 513, 6 * step)) + len(range(1, 513, step)))  # in passes 2 and 3
    assert third - first < calls * 4 / 1024, (first, second, third)  # MB: 4 kB a call


@given(
    st.lists(st.integers(0, 600), max_size=300),
    st.integers(1, 300),
    st.integers(1, 70_000),
    st.sampled_from([128, 512]),
)
@settings(max_examples=300, deadline=None)
def test_vectorized_planner_matches_the_per_text_rule(
    lengths: list[int], batch_size: int, budget: int, limit: int
) -> None:
    """plan_batches searches the sorted widths; the rule it implements, text by text, gives the same plan."""
    array = np.array(lengths, dtype=np.int64)
    order = np.argsort(-array, kind="stable")
    widths = [bucket_length(int(n), limit) for n in array[order]]
    expected, start = [], 0
    while start < len(order):
        end = min(start + max(1, min(batch_size, budget // widths[start])), len(order))
        short = next((i for i in range(start + 1, end) if 2 * widths[i] <= widths[start]), end)
        expected.append(order[start:short].tolist())
        start = short
    assert [b.tolist() for b in plan_batches(array, batch_size, budget, limit)] == expected
