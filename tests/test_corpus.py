"""`jina-onnx embed`: the local corpus job and its Ray runner, against in-process `encode`.

Ray runs locally (`ray.init(num_cpus=2, include_dashboard=False)`), once for the module, and is shut down
at the end; every Ray job here is bounded by the corpus size and a thread timeout.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import full_run, left_to_full

from benchmarks.sts import load_sts
from jina_onnx import ArtifactError, build_model
from jina_onnx.corpus import MANIFEST, REJECTED, CorpusError, embed_files


def texts_for(count: int, seed: int) -> list[str]:
    """Mixed lengths: mostly STS sentences, some 100-400-word passages, a few non-ASCII (an empty text is a bad
    row: tests/test_no_traceback.py)."""
    sentences = load_sts()[0] + load_sts()[1]
    rng = random.Random(seed)
    out = []
    for i in range(count):
        if i % 50 == 7:
            out.append(" ".join(rng.choice(sentences) for _ in range(rng.randint(10, 40))))
        elif i % 500 == 3:
            out.append(rng.choice(["Ünïcödé façade 日本語 😀", "x"]))
        else:
            out.append(rng.choice(sentences))
    return out


def write_corpus(directory: Path, shards: dict[str, list[str]]) -> Path:
    """One file per shard; the suffix says the format (.txt, .jsonl, .parquet)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, texts in shards.items():
        path = directory / name
        if name.endswith(".txt"):
            path.write_text("".join(t.replace("\n", " ") + "\n" for t in texts), encoding="utf-8")
        elif name.endswith(".jsonl"):
            path.write_text(
                "".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(texts)), encoding="utf-8"
            )
        else:
            pq.write_table(pa.table({"text": texts, "n": list(range(len(texts)))}), path, row_group_size=1000)
    return directory


# fp32 "within 1e-6": absolute, or relative for larger values. Batches of a different number of rows
# round float32 differently in the GEMMs: 2 of 6.2M values of 512-token texts differed by 1.4e-6 at 1.7.
def read_output(directory: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(directory)
    ids = table["id"].to_pylist()
    assert len(ids) == len(set(ids)), "an id was written twice"
    vectors = table["embedding"].combine_chunks().flatten().to_numpy().reshape(len(ids), -1)
    return dict(zip(ids, vectors))


def expected_ids(shards: dict[str, list[str]]) -> dict[str, str]:
    return {f"{name}:{row}": text for name, texts in shards.items() for row, text in enumerate(texts)}


@pytest.fixture(scope="module")
def local_ray():  # type: ignore[no-untyped-def]
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory, request) -> tuple[Path, dict[str, list[str]]]:  # type: ignore[no-untyped-def]
    # Eight shards of three formats, each a chunk of its own (under CHUNK_ROWS at both sizes), read, embedded and
    # written by both runners; rows put in the wrong place by the Ray actors fail it at 250 rows a shard as at
    # 2,500 (shown by reversing an actor's vectors).
    rows = 2500 if full_run(request.config) else 250
    if rows == 250:
        left_to_full("tests/test_corpus.py: big_corpus: rows per shard", 250, 2500)
    shards = {
        f"part-{i}.{fmt}": texts_for(rows, seed=i)
        for i, fmt in enumerate(["txt", "jsonl", "parquet", "txt", "jsonl", "parquet", "txt", "parquet"])
    }
    return write_corpus(tmp_path_factory.mktemp("corpus") / "in", shards), shards


def test_local_and_ray_jobs_equal_encode(big_corpus, artifact, local_ray, tmp_path: Path) -> None:
    source, shards = big_corpus
    truth = expected_ids(shards)
    total = sum(len(texts) for texts in shards.values())  # 2,000; with --full 20,000
    assert len(truth) == total
    model = build_model(artifact("t"), device="cpu", precision="fp32")
    manifest = embed_files(source, tmp_path / "local", model=model)
    assert manifest["rows"] == total and manifest["rejected"] == 0 and len(manifest["shards"]) == 8
    assert json.loads((tmp_path / "local" / MANIFEST).read_text())["rows"] == total
    assert (
        manifest["dim"] == 312
        and manifest["artifact_sha256"]
        == model.manifest.variants[next(iter(p for p in model.manifest.variants if p.value == "fp32"))].sha256
    )
    local = read_output(tmp_path / "local")
    assert set(local) == set(truth)  # every id, exactly once
    ids = sorted(truth)
    sample = ids[::7]  # encode's own vectors for every 7th row; the Ray job's rows are compared with all of these
    reference = model.encode([truth[i] for i in sample])
    np.testing.assert_allclose(np.stack([local[i] for i in sample]), reference, atol=1e-6, rtol=1e-6)
    assert sorted(p.name for p in (tmp_path / "local").iterdir()) == sorted(
        [f"{name}.parquet" for name in shards] + [MANIFEST]
    )  # no temporary file left, no _rejected.jsonl

    from jina_onnx.ray import run_corpus_job

    ray_manifest = run_corpus_job(
        str(source),
        str(tmp_path / "ray"),
        address=None,
        model=str(artifact("t")),
        precision="fp32",
        workers=2,
        cpus_per_worker=0.5,
        threads=1,
        show_progress=True,  # as `jina-onnx embed --ray` runs it without -q: the bar crashed the job once
    )
    assert ray_manifest["rows"] == total and ray_manifest["runner"] == "ray (2 workers)"
    remote = read_output(tmp_path / "ray")
    assert set(remote) == set(truth)
    # Every row against the local job's (each within 1e-6 of encode's): a row in another's place fails here.
    np.testing.assert_allclose(np.stack([remote[i] for i in ids]), np.stack([local[i] for i in ids]), atol=2e-6)
    assert (
        pq.read_schema(next((tmp_path / "ray").glob("*.parquet"))).field("embedding").type
        == pq.read_schema(next((tmp_path / "local").glob("*.parquet"))).field("embedding").type
    )


def test_embed_dataset_composes_with_ray_readers(artifact, local_ray, tmp_path: Path) -> None:
    from jina_onnx.ray import embed_dataset

    texts = texts_for(300, seed=9)
    pq.write_table(pa.table({"text": texts}), tmp_path / "in.parquet")
    ds = embed_dataset(
        local_ray.data.read_parquet(str(tmp_path / "in.parquet")),
        model=str(artifact("t")),
        precision="fp32",
        workers=1,
        cpus_per_worker=0.5,
        ship="path",
    )
    table = pa.concat_tables(local_ray.get(ds.to_arrow_refs()))
    got = table["embedding"].combine_chunks().flatten().to_numpy().reshape(len(texts), -1)
    expected = build_model(artifact("t"), device="cpu", precision="fp32").encode(table["text"].to_pylist())
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_resume_after_sigkill_gives_the_same_output(artifact, tmp_path: Path, sized) -> None:
    # Killed once a shard is done and the next one half written, at 600 rows a shard as at 1,500: shown by
    # a resume that re-embeds finished shards (their files change) and one that keeps the temporary file.
    rows = int(sized(600, 1500, "rows per shard"))
    shards = {f"s{i}.{fmt}": texts_for(rows, seed=20 + i) for i, fmt in enumerate(["txt", "jsonl", "parquet"] * 2)}
    source = write_corpus(tmp_path / "in", shards)
    command = [
        sys.executable,
        "-m",
        "jina_onnx",
        "embed",  # as a user runs it: the progress bar on
        str(source),
        str(tmp_path / "out"),
        "-m",
        str(artifact("t")),
        "--precision",
        "fp32",
        "--device",
        "cpu",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out").glob("*.parquet")):  # the first shard is complete...
        assert proc.poll() is None and time.monotonic() < deadline, "the job ended before it could be killed"
        time.sleep(0.05)
    time.sleep(0.3)  # ...and the next one is half written
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in (tmp_path / "out").glob("*.parquet"))
    assert 0 < len(done) < len(shards) and not (tmp_path / "out" / MANIFEST).exists()
    assert list((tmp_path / "out").glob(".*.tmp-*")), "expected the killed shard's temporary file"
    first = {name: (tmp_path / "out" / name).stat().st_mtime_ns for name in done}
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    for name, mtime in first.items():
        assert (tmp_path / "out" / name).stat().st_mtime_ns == mtime  # finished shards were skipped
    assert not list((tmp_path / "out").glob(".*.tmp-*"))
    subprocess.run(command[:5] + [str(tmp_path / "clean")] + command[6:], check=True, capture_output=True, timeout=300)
    resumed, clean = read_output(tmp_path / "out"), read_output(tmp_path / "clean")
    assert set(resumed) == set(clean) == set(expected_ids(shards))
    for key, vector in clean.items():
        assert np.array_equal(resumed[key], vector)
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["rows"] == 6 * rows and sum(1 for s in manifest["shards"].values() if s.get("resumed")) == len(done)


def test_a_shipped_artifact_leaves_no_copy_on_the_node(artifact, tmp_path: Path, monkeypatch) -> None:
    """Ray kills its actors at shutdown, which runs no finalizer: an actor's copy of an artifact shipped through
    the object store is gone once its model is built (or has failed to build), and the actor still embeds."""
    from jina_onnx.corpus.ray import _Embedder, artifact_payload

    node_tmp = tmp_path / "node-tmp"
    node_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(node_tmp))
    directory = artifact("t")
    payload = artifact_payload(directory, "int8")
    embedder = _Embedder(payload, "int8", "cpu", 1, "text", "embedding", None, None)
    assert list(node_tmp.iterdir()) == []
    texts = ["a cat sits on the mat", "a kitten"]
    embedded = embedder(pa.table({"text": texts}))
    expected = build_model(directory, device="cpu", precision="int8").encode(texts)
    np.testing.assert_allclose(np.array(embedded.column("embedding").to_pylist()), expected, atol=1e-6)

    graph = next(name for name in payload if name.endswith(".onnx"))
    damaged = {**payload, graph: payload[graph][:-1] + bytes([payload[graph][-1] ^ 1])}
    with pytest.raises(ArtifactError, match="checksum"):
        _Embedder(damaged, "int8", "cpu", 1, "text", "embedding", None, None)
    assert list(node_tmp.iterdir()) == []


def test_a_killed_ray_worker_changes_nothing(artifact, local_ray, sized, tmp_path: Path) -> None:
    import psutil

    from jina_onnx.ray import run_corpus_job

    # The quick run: 1,500 rows a shard. The actor is killed about 15 s into the job here (Ray Data's start
    # and the actors' model loads come first) and the job ran 15 s more; at 3,000 it ran 35 s more.
    rows = int(sized(1500, 3000, "rows per shard"))
    shards = {f"k{i}.txt": texts_for(rows, seed=40 + i) for i in range(4)}
    source = write_corpus(tmp_path / "in", shards)
    killed: list[int] = []

    def kill_one_embedder() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for proc in psutil.process_iter(["pid", "cmdline"]):
                if "_Embedder" in " ".join(proc.info["cmdline"] or []) and time.time() - proc.create_time() > 3:
                    os.kill(proc.info["pid"], signal.SIGKILL)  # mid-job: it has been embedding for 3 s
                    killed.append(proc.info["pid"])
                    return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_one_embedder, daemon=True)
    killer.start()
    manifest = run_corpus_job(
        str(source),
        str(tmp_path / "out"),
        address=None,
        model=str(artifact("t")),
        precision="fp32",
        workers=2,
        cpus_per_worker=0.5,
        threads=1,
    )
    killer.join(timeout=5)
    assert killed, "no embedding actor was killed: the job finished too soon to test anything"
    out = read_output(tmp_path / "out")
    truth = expected_ids(shards)
    assert set(out) == set(truth) and manifest["rows"] == len(truth)
    ids = sorted(truth)[::97]
    reference = build_model(artifact("t"), device="cpu", precision="fp32").encode([truth[i] for i in ids])
    np.testing.assert_allclose(np.stack([out[i] for i in ids]), reference, atol=1e-6, rtol=1e-6)


@pytest.fixture
def bad_corpus(tmp_path: Path) -> Path:
    directory = tmp_path / "bad"
    directory.mkdir()
    (directory / "a.txt").write_bytes(b"fine\nalso fine\ncaf\xe9 latin-1\nlast\n")
    (directory / "b.jsonl").write_text(
        '{"text": "ok"}\n{"text": 42}\n{"text": null}\n{broken\n{"other": "x"}\n{"text": "ok too"}\n'
    )
    pq.write_table(pa.table({"text": ["a", None, "c", "", " \t"]}), directory / "c.parquet")
    return directory


def test_bad_rows_stop_the_job_by_default(bad_corpus: Path, artifact, tmp_path: Path) -> None:
    with pytest.raises(
        CorpusError, match=r"a\.txt: row 2 \(id a\.txt:2\): not valid UTF-8 \(byte 3\); .*--on-bad-row skip"
    ):
        embed_files(bad_corpus, tmp_path / "out", model=str(artifact("t")), precision="fp32", device="cpu")
    assert not list((tmp_path / "out").iterdir())  # no shard, no temporary file, no manifest


@pytest.mark.parametrize("runner", ["local", "ray"])
def test_bad_rows_skipped_are_set_aside_with_their_reason(
    bad_corpus: Path, artifact, tmp_path: Path, runner: str, request
) -> None:
    if runner == "local":
        manifest = embed_files(
            bad_corpus,
            tmp_path / "out",
            model=str(artifact("t")),
            precision="fp32",
            device="cpu",
            on_bad_row="skip",
            keep_text=True,
        )
    else:
        request.getfixturevalue("local_ray")
        from jina_onnx.ray import run_corpus_job

        manifest = run_corpus_job(
            str(bad_corpus),
            str(tmp_path / "out"),
            address=None,
            model=str(artifact("t")),
            precision="fp32",
            workers=1,
            cpus_per_worker=0.5,
            on_bad_row="skip",
            keep_text=True,
        )
    rejected = [json.loads(line) for line in (tmp_path / "out" / REJECTED).read_text().splitlines()]
    assert {(r["id"], r["reason"]) for r in rejected} == {
        ("a.txt:2", "not valid UTF-8 (byte 3)"),
        ("b.jsonl:1", "text is int, not a string"),
        ("b.jsonl:2", "text is null"),
        ("b.jsonl:3", "not valid JSON (Expecting property name enclosed in double quotes)"),
        ("b.jsonl:4", "no 'text' field (fields: 'other')"),
        ("c.parquet:1", "text is null"),
        ("c.parquet:3", "empty text"),  # a vector of nothing: never embedded silently
        ("c.parquet:4", "blank text (only whitespace)"),
    }
    assert manifest["rows"] == 7 and manifest["rejected"] == 8
    table = pq.read_table(tmp_path / "out")
    assert sorted(table["id"].to_pylist()) == [
        "a.txt:0",
        "a.txt:1",
        "a.txt:3",
        "b.jsonl:0",
        "b.jsonl:5",
        "c.parquet:0",
        "c.parquet:2",
    ]
    assert "fine" in table["text"].to_pylist()


def test_rerun_with_other_settings_is_refused(artifact, tmp_path: Path) -> None:
    source = write_corpus(tmp_path / "in", {"x.txt": ["one", "two"]})
    embed_files(source, tmp_path / "out", model=str(artifact("t")), precision="fp32", device="cpu")
    with pytest.raises(
        CorpusError,
        match=r"x\.txt\.parquet: made with other settings \(onnx_sha256, precision\); "
        "pass --overwrite",
    ):
        embed_files(source, tmp_path / "out", model=str(artifact("t")), precision="int8", device="cpu")
    manifest = embed_files(
        source, tmp_path / "out", model=str(artifact("t")), precision="int8", device="cpu", overwrite=True
    )
    assert manifest["precision"] == "int8" and manifest["rows"] == 2
    with pytest.raises(CorpusError, match="no input files"):
        embed_files(tmp_path / "nothing-*.txt", tmp_path / "out2", model=str(artifact("t")))
    (tmp_path / "in" / "y.csv").write_text("a\n")
    with pytest.raises(CorpusError, match=r"y\.csv: unknown format"):
        embed_files(tmp_path / "in" / "*", tmp_path / "out2", model=str(artifact("t")))


def test_cli_embed_prints_a_summary(artifact, tmp_path: Path, capsys) -> None:
    from jina_onnx.cli import main

    source = write_corpus(tmp_path / "in", {"q.jsonl": ["alpha", "beta", "gamma"]})
    assert (
        main(
            [
                "embed",  # the progress bar on, as a user runs it
                str(source),
                str(tmp_path / "out"),
                "-m",
                str(artifact("t")),
                "--precision",
                "fp32",
                "--device",
                "cpu",
                "--id-column",
                "n",
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert out.startswith("3 texts embedded into") and "embed jina-embedding-t-en-v1: " in err
    again = ["embed", str(source), str(tmp_path / "out"), "-m", str(artifact("t")), "--precision", "fp32"]
    assert main([*again, "--device", "cpu", "--id-column", "n"]) == 0
    # A rerun that skipped everything says so; it used to say "3 texts embedded".
    out = capsys.readouterr().out
    assert out.startswith("nothing to do: ") and "already holds all 1 input file (3 texts)" in out
    assert sorted(pq.read_table(tmp_path / "out")["id"].to_pylist()) == ["0", "1", "2"]
    assert main(["embed", str(source), str(tmp_path / "out"), "--workers", "0"]) == 1


def test_ray_refuses_a_pool_that_leaves_no_cpu_for_reading(artifact, local_ray, tmp_path: Path) -> None:
    """Two one-CPU workers on the 2-CPU Ray used to wait forever without a word; now the job refuses at once
    with what to change, and the setting it suggests runs."""
    from jina_onnx.ray import check_capacity, run_corpus_job

    shards = {f"c{i}.txt": texts_for(300, seed=70 + i) for i in range(4)}
    source = write_corpus(tmp_path / "in", shards)
    started = time.monotonic()
    with pytest.raises(
        CorpusError,
        match=r"--workers 2 x --cpus-per-worker 1 take every CPU of this Ray cluster "
        r"\(2\).*use --cpus-per-worker 0.75 or less",
    ):
        run_corpus_job(
            str(source),
            str(tmp_path / "refused"),
            address=None,
            model=str(artifact("t")),
            precision="fp32",
            workers=2,
            cpus_per_worker=1.0,
            threads=1,
        )
    assert time.monotonic() - started < 30
    assert not list((tmp_path / "refused").glob("*.parquet"))
    manifest = run_corpus_job(
        str(source),
        str(tmp_path / "out"),
        address=None,
        model=str(artifact("t")),
        precision="fp32",
        workers=2,
        cpus_per_worker=0.75,
        threads=1,
    )
    assert manifest["rows"] == len(expected_ids(shards))
    # The same rule on other clusters, without one: two nodes of one CPU; a worker larger than any node.
    with pytest.raises(CorpusError, match="take every CPU"):
        check_capacity([1.0, 1.0], workers=2, cpus_per_worker=1.0)
    check_capacity([1.0, 1.0], workers=2, cpus_per_worker=0.75)
    with pytest.raises(CorpusError, match=r"do not fit this Ray cluster: its nodes have 1, 1 CPUs, room for 0"):
        check_capacity([1.0, 1.0], workers=1, cpus_per_worker=1.5)
