"""The host path on worker threads: outputs bit-identical to the serial path, order, errors, threads, fork."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.sts import load_sts
from jina_onnx import EmbeddingModel, InputTypeError, batching, build_model, hostpath
from jina_onnx.batching import DEVICE_DEFAULTS, sort_windows
from jina_onnx.tokenization import TokenizedBatch


def mixed_texts(count: int, seed: int = 0) -> list[str]:
    """STS sentences, long passages, empty and non-ASCII strings, shuffled."""
    sentences = load_sts()[0]
    rng = random.Random(seed)
    texts = [rng.choice(sentences) for _ in range(count)]
    for i in range(0, count, 37):
        texts[i] = " ".join(rng.choice(sentences) for _ in range(rng.randint(5, 40)))  # up to past 512 tokens
    texts[0] = " ".join(rng.choice(sentences) for _ in range(60))  # always one past 512 tokens
    texts[3], texts[11] = "", "Ünïcödé façade – 日本語 😀"
    return texts


def same_plan_serially(model, texts: list[str], **options: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """What `model.encode(texts)` gives, from the same plan with the host work done in this thread."""
    out = np.empty((len(texts), model.dim), dtype=np.float32)
    for batch in model.prepare_batches(texts, **options):
        out[batch.rows] = model.run_batch(batch)
    return out


@pytest.fixture(scope="module")
def models(artifact):  # type: ignore[no-untyped-def]
    """(serial, with 3 host workers) t fp32 models on the same artifact."""
    return (
        build_model(artifact("t"), device="cpu", precision="fp32", pipeline=False),
        build_model(artifact("t"), device="cpu", precision="fp32", host_workers=3),
    )


def test_pipelined_equals_serial_exactly(models, artifact, sized, monkeypatch) -> None:
    serial, pipelined = models
    assert (serial.host_workers, pipelined.host_workers) == (0, 3) and pipelined.pipeline
    # Three windows (the first small), each cut into slices for the workers. The quick run makes the full
    # windows 512 texts instead of 4,096 (the same code, an eighth of the texts): a swap of two workers'
    # slices inside a window fails it as it fails the full size.
    window = int(sized(512, 4096, "texts in a full sort window"))
    monkeypatch.setattr(batching, "WINDOW_TEXTS", window)
    texts = mixed_texts(window + 400)
    assert len(sort_windows(len(texts), DEVICE_DEFAULTS["cpu"][0])) == 3
    assert len(sort_windows(len(texts), DEVICE_DEFAULTS["cpu"][0], ramp=True)) > 3  # the workers' windows
    with pytest.warns(UserWarning, match="truncated"):
        expected = serial.encode(texts)
    with pytest.warns(UserWarning, match="truncated"):
        assert np.array_equal(pipelined.encode(texts), expected)  # on a CPU both use the same windows
    with pytest.warns(UserWarning, match="truncated"):
        streamed = np.concatenate(list(pipelined.encode_iter(iter(texts), chunk_size=700)))
    with pytest.warns(UserWarning, match="truncated"):
        assert np.array_equal(streamed, np.concatenate(list(serial.encode_iter(iter(texts), chunk_size=700))))
    # The GPU's host path (windows that ramp up), run here on the CPU session: bit-identical to the same
    # plan done in this thread, and the same vectors as the serial model within float noise.
    gpu_like = EmbeddingModel(
        pipelined.directory,
        pipelined.manifest,
        pipelined.variant,
        "cuda",
        None,
        engine=pipelined.engine,
        host_workers=3,
    )
    with pytest.warns(UserWarning, match="truncated"):
        ramped = gpu_like.encode(texts)
    assert np.array_equal(ramped, same_plan_serially(gpu_like, texts))
    np.testing.assert_allclose(ramped, expected, atol=1e-5)
    one = build_model(artifact("t"), device="cpu", precision="fp32", pipeline=True)  # the default count: >= 1
    assert one.host_workers >= 1
    with pytest.warns(UserWarning, match="truncated"):
        assert np.array_equal(one.encode(texts, batch_size=7), serial.encode(texts, batch_size=7))
    # I/O binding (the CUDA path, run here on the CPU) copies on the workers: same values.
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


def test_parallel_host_path_stays_bounded_and_stops_with_its_consumer() -> None:
    prepared = []

    def tokenize(texts: list[str]) -> TokenizedBatch:
        return TokenizedBatch([[1] * (1 + len(t) % 5) for t in texts], truncated=0)

    def prepare(ids: list[list[int]], rows: np.ndarray, lone: bool) -> int:
        prepared.append(len(ids))
        return len(prepared)

    def plan(tokens: TokenizedBatch) -> list[np.ndarray]:
        return np.array_split(np.arange(len(tokens.ids)), len(tokens.ids) // 4)

    windows = ([f"text {i}"] * 400 for i in range(10))
    before = threading.active_count()
    stream = hostpath.parallel(windows, tokenize, plan, prepare, workers=3, slice_size=32, ahead=3)
    batches = 0
    for item in stream:
        if isinstance(item, hostpath.ChunkStart):
            assert item.size == 400
            continue
        batches += 1
        time.sleep(0.001)
        # at most `ahead` padded batches of a window wait for the device, and near a window's end the next
        # window's first `ahead` too
        assert len(prepared) - batches <= 2 * 3
        if batches == 150:
            break
    stream.close()
    assert threading.active_count() == before  # the workers were stopped and joined
    assert len(prepared) <= 150 + 2 * 3


def test_padding_goes_before_tokenizing_the_next_window() -> None:
    log: list[str] = []

    def tokenize(texts: list[str]) -> TokenizedBatch:
        log.append(f"tokenize {texts[0]}")
        time.sleep(0.005)
        return TokenizedBatch([[1, 2]] * len(texts), truncated=0)

    def prepare(ids: list[list[int]], rows: np.ndarray, lone: bool) -> int:
        time.sleep(0.002)  # long enough for the consumer to queue the next pad meanwhile
        log.append("pad")
        return len(ids)

    def plan(tokens: TokenizedBatch) -> list[np.ndarray]:
        return np.array_split(np.arange(len(tokens.ids)), 8)

    windows = iter([["w0"] * 64, ["w1"] * 64])
    out = list(hostpath.parallel(windows, tokenize, plan, prepare, workers=1, slice_size=8, ahead=2))
    assert [x for x in out if not isinstance(x, hostpath.ChunkStart)] == [8] * 16
    # One worker: window 1's 8 slices were queued before window 0's first pad, yet window 0's 8 pads ran
    # before all but the slice the worker had already taken (first come first served would run all 8 first).
    last_pad_of_w0 = [i for i, entry in enumerate(log) if entry == "pad"][7]
    assert log[:last_pad_of_w0].count("tokenize w1") <= 1


def test_producer_errors_arrive_in_order(models) -> None:
    _, pipelined = models
    texts: list[object] = ["a sentence"] * 10 + [None] + ["more"] * 5
    chunks = pipelined.encode_iter(iter(texts), chunk_size=4)
    assert next(chunks).shape == (4, pipelined.dim) and next(chunks).shape == (4, pipelined.dim)
    with pytest.raises(InputTypeError, match=r"data\[10\] is None"):
        next(chunks)
    before = threading.active_count()
    for _ in pipelined.encode_iter(iter(["x"] * 5000), chunk_size=100):
        break  # a consumer that leaves early takes the worker threads with it
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
    for index in range(len(jobs)):
        assert np.array_equal(results[index], expected[index])  # same plan, shared model, 8 threads: bit-equal


def test_vectorized_padding_matches_row_by_row(models) -> None:
    tokenizer = models[0].tokenizer
    rng = random.Random(1)
    ids = [[rng.randint(1, 999) for _ in range(rng.randint(0, 40))] for _ in range(57)]
    input_ids, mask = tokenizer.pad(ids, 48)
    assert input_ids.shape == mask.shape == (57, 48) and input_ids.dtype == mask.dtype == np.int64
    for row, seq in enumerate(ids):
        assert input_ids[row, : len(seq)].tolist() == seq and (input_ids[row, len(seq) :] == tokenizer.pad_id).all()
        assert mask[row].tolist() == [1] * len(seq) + [0] * (48 - len(seq))
    with pytest.raises(ValueError, match="does not fit width 8"):
        tokenizer.pad(ids, 8)


def test_device_sized_defaults(models) -> None:
    serial, _ = models
    assert (serial.default_batch_size, serial.default_token_budget) == DEVICE_DEFAULTS["cpu"] == (32, 8192)
    assert DEVICE_DEFAULTS["cuda"] == (256, 65536)
    assert 256 * 128 <= DEVICE_DEFAULTS["cuda"][1]  # a GPU batch of 128-token texts is not cut by the budget


FORK_CHECK = """
import json, os, sys, time
from pathlib import Path
from benchmarks.host import NearFreeEngine, model_with
from benchmarks.sts import load_sts
from jina_onnx.manifest import load_manifest

artifact = Path(sys.argv[1])
manifest = load_manifest(artifact)
sentences = load_sts()[0]
texts = [" ".join(sentences[i:i + 6]) for i in range(0, 6 * 1500, 6)]  # ~100 tokens each
model = model_with(artifact, NearFreeEngine(manifest.dim, manifest.inputs), int(sys.argv[2]))
model.tokenizer.tokenize(texts)  # the library's own parallel pool, used before the fork (a service's warm-up)

def speed():
    best = 0.0
    for _ in range(5):  # best of 5: the machine is shared, and a ratio of two timings is what is judged
        started = time.perf_counter()
        model.encode(texts, batch_size=256, token_budget=65536)
        best = max(best, len(texts) / (time.perf_counter() - started))
    return best

parent = speed()
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, json.dumps(speed()).encode())
    os._exit(0)
os.waitpid(pid, 0)
child = json.loads(os.read(read, 100))
print(json.dumps({"parent": parent, "child": child}))  # best of 5 each: the same chance to hit a quiet moment
"""


def test_a_forked_child_encodes_as_fast_as_its_parent(artifact) -> None:
    """tokenizers >= 0.22.2 runs its pool on one thread in a child forked after the parent used it (a
    `gunicorn --preload` worker): the host workers must not depend on that pool, nor on threads of the
    parent's, which a fork does not copy."""
    env = {k: v for k, v in os.environ.items() if k != "TOKENIZERS_PARALLELISM"}

    def speeds(workers: int) -> dict[str, float]:
        done = subprocess.run(
            [sys.executable, "-c", FORK_CHECK, str(artifact("t")), str(workers)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    # What the check guards against: the host work in the calling thread relies on the library's pool,
    # which the child runs on one thread (about half the parent's speed on 2 cores). The bounds sit between
    # that half and 1.0, far enough from both that a shared, noisy machine does not cross them.
    with_workers = speeds(2)
    assert with_workers["child"] >= 0.8 * with_workers["parent"], with_workers
    # The serial run shows the check can see the difference, which takes a second core that really runs in
    # parallel: the AVX2-only EPYC's two vCPUs scale about 1.16x (one core), and a busy shared machine less.
    # A neighbour's load can land on the parent's timings only: a contrast missed once is measured once more
    # (on this shared Xeon a CI run read 0.80x right after two threads hashed 2.29x faster than one).
    for attempt in range(2):
        scaling = two_thread_scaling()
        if len(os.sched_getaffinity(0)) < 2 or scaling < 1.6:
            print(f"two threads ran {scaling:.2f}x one here: the serial contrast needs a second free core")
            return
        serial = speeds(0)
        if serial["child"] < 0.75 * serial["parent"] or attempt == 1:
            break
    assert serial["child"] < 0.75 * serial["parent"], (serial, f"two threads ran {scaling:.2f}x one")


def two_thread_scaling() -> float:
    """How much faster two threads hash than one on this machine now (hashlib releases the GIL): 2.0 with two
    free cores, about 1.0 where only one runs."""
    import hashlib

    data = os.urandom(1 << 24)

    def hash_for(threads: int) -> float:
        started = time.perf_counter()
        workers = [threading.Thread(target=lambda: [hashlib.sha256(data) for _ in range(8)]) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return threads / (time.perf_counter() - started)

    return max(hash_for(2) for _ in range(3)) / max(hash_for(1) for _ in range(3))


def test_worker_count_defaults_and_bad_values(artifact, monkeypatch) -> None:
    from jina_onnx import InputError

    monkeypatch.setattr(hostpath, "available_cores", lambda: 16)
    assert hostpath.default_workers("cuda", engine_threads=16) == 15  # all but the core that drives the GPU
    assert hostpath.default_workers("cpu", engine_threads=16) == 0  # ONNX Runtime already uses every core
    assert hostpath.default_workers("cpu", engine_threads=4) == 12
    path = artifact("t")
    assert build_model(path, device="cpu", precision="fp32").host_workers == 0
    assert build_model(path, device="cpu", precision="fp32", threads=2, pipeline=True).host_workers == 14
    with pytest.raises(InputError, match=r"host_workers=-1 must be a non-negative integer"):
        build_model(path, device="cpu", precision="fp32", host_workers=-1)
    with pytest.raises(InputError, match="pipeline=False keeps the host work in the calling thread"):
        build_model(path, device="cpu", precision="fp32", pipeline=False, host_workers=2)
