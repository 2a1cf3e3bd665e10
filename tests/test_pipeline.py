"""The pipelined encode: host work one step ahead in a background thread, outputs unchanged."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest

from jina_onnx import InputTypeError, build_model
from jina_onnx.batching import DEVICE_DEFAULTS, sort_windows
from jina_onnx.pipeline import prefetch

from benchmarks.sts import load_sts


def mixed_texts(count: int, seed: int = 0) -> list[str]:
    """STS sentences, long passages, empty and non-ASCII strings, shuffled."""
    sentences = load_sts()[0]
    rng = random.Random(seed)
    texts = [rng.choice(sentences) for _ in range(count)]
    for i in range(0, count, 37):
        texts[i] = " ".join(rng.choice(sentences) for _ in range(rng.randint(5, 40)))  # up to past 512 tokens
    texts[3], texts[11] = "", "Ünïcödé façade – 日本語 😀"
    return texts


@pytest.fixture(scope="module")
def models(artifact):  # type: ignore[no-untyped-def]
    """(serial, pipelined) t fp32 models on the same artifact."""
    return (build_model(artifact("t"), device="cpu", precision="fp32", pipeline=False),
            build_model(artifact("t"), device="cpu", precision="fp32", pipeline=True))


def test_pipelined_equals_serial_exactly(models, artifact) -> None:
    serial, pipelined = models
    assert not serial.pipeline and pipelined.pipeline
    texts = mixed_texts(4500)
    assert len(sort_windows(len(texts), DEVICE_DEFAULTS["cpu"][0])) == 3
    with pytest.warns(UserWarning, match="truncated"):
        expected = serial.encode(texts)
    with pytest.warns(UserWarning, match="truncated"):
        assert np.array_equal(pipelined.encode(texts), expected)
    with pytest.warns(UserWarning, match="truncated"):
        streamed = np.concatenate(list(pipelined.encode_iter(iter(texts), chunk_size=700)))
    assert np.array_equal(streamed, expected)
    # I/O binding (the CUDA path, run here on the CPU) copies in the producer thread: same values.
    bound = build_model(artifact("s"), device="cpu", precision="int8", pipeline=True)
    bound.io_binding = True
    plain = build_model(artifact("s"), device="cpu", precision="int8", pipeline=False)
    with pytest.warns(UserWarning, match="truncated"):
        assert np.array_equal(bound.encode(texts[:300]), plain.encode(texts[:300]))


def test_pipelined_keeps_the_callers_order(models) -> None:
    serial, pipelined = models
    texts = [t for t in mixed_texts(1200) if len(t) < 300]
    expected = serial.encode(texts)
    order = np.random.default_rng(0).permutation(len(texts))
    shuffled = pipelined.encode([texts[i] for i in order])
    np.testing.assert_allclose(shuffled, expected[order], atol=1e-6)
    alone = np.stack([serial.encode([texts[i]])[0] for i in range(0, len(texts), 97)])
    np.testing.assert_allclose(expected[::97], alone, atol=1e-5)  # a lone text is unpadded: not bit-equal


def test_prefetch_stays_bounded_and_stops_with_its_consumer() -> None:
    produced = []

    def source():  # type: ignore[no-untyped-def]
        for i in range(1000):
            produced.append(i)
            yield i

    before = threading.active_count()
    stream = prefetch(source(), depth=2)
    for consumed, item in enumerate(stream):
        assert item == consumed
        time.sleep(0.002)
        # in the queue (2), blocked in put (1) and just handed over (1): never more ahead than that
        assert len(produced) - consumed <= 4
        if consumed == 50:
            break
    stream.close()
    assert threading.active_count() == before  # the producer was stopped and joined
    assert len(produced) <= 55


def test_producer_errors_arrive_in_order(models) -> None:
    _, pipelined = models
    texts: list[object] = ["a sentence"] * 10 + [None] + ["more"] * 5
    chunks = pipelined.encode_iter(iter(texts), chunk_size=4)
    assert next(chunks).shape == (4, pipelined.dim) and next(chunks).shape == (4, pipelined.dim)
    with pytest.raises(InputTypeError, match=r"data\[10\] is None"):
        next(chunks)
    before = threading.active_count()
    for _ in pipelined.encode_iter(iter(["x"] * 5000), chunk_size=100):
        break  # a consumer that leaves early takes the producer thread with it
    assert threading.active_count() == before

    def broken():  # type: ignore[no-untyped-def]
        yield "fine"
        raise RuntimeError("the source failed")

    with pytest.raises(RuntimeError, match="the source failed"):
        list(pipelined.encode_iter(broken(), chunk_size=1))


def test_threads_share_one_pipelined_model(models) -> None:
    serial, pipelined = models
    jobs = [mixed_texts(150, seed) for seed in range(8)]
    expected = [serial.encode(texts, batch_size=16) for texts in jobs]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for _ in range(3):
                results[index] = pipelined.encode(jobs[index], batch_size=16)
        except BaseException as error:  # collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    for index, texts in enumerate(jobs):
        assert np.array_equal(results[index], expected[index])  # same plan, shared model, 8 threads: bit-equal


def test_vectorized_padding_matches_row_by_row(models) -> None:
    tokenizer = models[0].tokenizer
    rng = random.Random(1)
    ids = [[rng.randint(1, 999) for _ in range(rng.randint(0, 40))] for _ in range(57)]
    input_ids, mask = tokenizer.pad(ids, 48)
    assert input_ids.shape == mask.shape == (57, 48) and input_ids.dtype == mask.dtype == np.int64
    for row, seq in enumerate(ids):
        assert input_ids[row, : len(seq)].tolist() == seq and (input_ids[row, len(seq):] == tokenizer.pad_id).all()
        assert mask[row].tolist() == [1] * len(seq) + [0] * (48 - len(seq))
    with pytest.raises(ValueError, match="does not fit width 8"):
        tokenizer.pad(ids, 8)


def test_device_sized_defaults(models) -> None:
    serial, _ = models
    assert (serial.default_batch_size, serial.default_token_budget) == DEVICE_DEFAULTS["cpu"] == (32, 8192)
    assert DEVICE_DEFAULTS["cuda"] == (256, 65536)
    assert 256 * 128 <= DEVICE_DEFAULTS["cuda"][1]  # a GPU batch of 128-token texts is not cut by the budget
