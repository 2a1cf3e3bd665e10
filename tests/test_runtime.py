"""The torch-free runtime: seed API, input checks, damaged artifacts, device selection."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from jina_onnx import (
    ArtifactError,
    DeviceError,
    InputError,
    InputTypeError,
    ModelNotFoundError,
    TruncationWarning,
    build_model,
    cos_sim,
    encode,
)

SEED = ["how is the weather today", "What is the current weather like today?"]


def test_seed_api(t_model) -> None:
    a, b = encode(model=t_model, data=SEED)
    assert a.shape == (312,) and a.dtype == np.float32
    similarity = cos_sim(a, b)
    assert isinstance(similarity, float) and -1.0 <= similarity <= 1.0
    matrix = cos_sim(np.stack([a, b]), np.stack([a, b, a]))
    assert matrix.shape == (2, 3) and np.allclose(np.diag(matrix[:, :2]), 1.0, atol=1e-6)
    assert matrix[0, 1] == pytest.approx(similarity, abs=1e-6)


def test_order_and_batching_do_not_change_results(t_model) -> None:
    texts = [f"sentence number {i} " + "word " * (i * 7 % 50) for i in range(40)]
    together = t_model.encode(texts, batch_size=7)
    alone = np.stack([t_model.encode([t])[0] for t in texts])
    assert np.abs(together - alone).max() < 1e-5
    reversed_ = t_model.encode(texts[::-1], batch_size=40)[::-1]
    assert np.abs(together - reversed_).max() < 1e-5


def test_empty_list_and_empty_string(t_model) -> None:
    assert t_model.encode([]).shape == (0, 312)
    vector = t_model.encode([""])
    assert vector.shape == (1, 312) and np.isfinite(vector).all()


def test_normalize_flag(t_model) -> None:
    raw = t_model.encode(SEED)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)  # jina v1 has no Normalize module
    unit = t_model.encode(SEED, normalize=True)
    assert np.allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
    assert np.allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)


def test_truncation_warns_once_with_count(t_model) -> None:
    long = "word " * 600
    with pytest.warns(TruncationWarning) as record:
        out = t_model.encode([long, "short", long])
    assert len(record) == 1 and "2 of 3 inputs were longer than 512 tokens" in str(record[0].message)
    assert np.allclose(out[0], out[2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t_model.encode(["short"])  # no warning when nothing is cut


def test_max_length_argument(t_model) -> None:
    text = "one two three four five six seven eight nine ten"
    with pytest.warns(TruncationWarning, match="longer than 6 tokens"):
        cut = t_model.encode([text], max_length=6)
    assert np.allclose(cut, t_model.encode(["one two three four"]), atol=1e-5)  # [CLS] + 4 words + [SEP]
    for bad in (0, 1, 513, "8", 2.5):
        with pytest.raises(InputError, match="max_length"):
            t_model.encode([text], max_length=bad)


@pytest.mark.parametrize(
    "data,message",
    [
        (["ok", None], r"data\[1\] is None"),
        (["ok", "fine", 3], r"data\[2\] is int"),
        ([["nested"]], r"data\[0\] is list"),
        ("a single string", "wrap it"),
        (None, "got NoneType"),
        ([b"bytes"], r"data\[0\] is bytes"),
    ],
)
def test_bad_inputs_name_the_problem(t_model, data, message) -> None:
    with pytest.raises(InputTypeError, match=message):
        t_model.encode(data)


def test_bad_arguments(t_model, artifact) -> None:
    with pytest.raises(InputError, match="batch_size=0"):
        t_model.encode(SEED, batch_size=0)
    with pytest.raises(InputTypeError, match="EmbeddingModel"):
        encode(model="jina-embedding-t-en-v1", data=SEED)
    with pytest.raises(InputError, match="device='tpu'"):
        build_model(artifact("t"), device="tpu")
    with pytest.raises(InputError, match="precision='fp8'"):
        build_model(artifact("t"), precision="fp8")
    with pytest.raises(InputError, match="threads=0"):
        build_model(artifact("t"), threads=0)
    with pytest.raises(InputError, match="dimension 3 but b has 2"):
        cos_sim([1, 2, 3], [1, 2])


def test_cuda_request_without_cuda_raises(artifact) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA; the CPU-only path is what is tested here")
    with pytest.raises(DeviceError, match="device='cuda'"):
        build_model(artifact("t"), device="cuda")
    assert build_model(artifact("t"), device="auto").device == "cpu"


def test_name_lookup_and_not_exported(artifact, tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    shutil.copytree(artifact("t"), home / "jina-embedding-t-en-v1")
    monkeypatch.setenv("JINA_ONNX_HOME", str(home))
    assert build_model("jina-embedding-t-en-v1").name == "jina-embedding-t-en-v1"
    assert build_model("jinaai/jina-embedding-t-en-v1").dim == 312
    with pytest.raises(ModelNotFoundError, match="jina-onnx export jinaai/jina-embedding-s-en-v1"):
        build_model("jina-embedding-s-en-v1")
    with pytest.raises(ModelNotFoundError, match="--out"):
        build_model("jina-embedding-s-en-v1", cache_dir=tmp_path / "elsewhere")
    checkpoint_like = tmp_path / "ckpt"
    checkpoint_like.mkdir()
    with pytest.raises(ModelNotFoundError, match="not an exported artifact"):
        build_model(checkpoint_like)


@pytest.fixture
def damaged(artifact, tmp_path: Path) -> Path:
    copy = tmp_path / "damaged"
    shutil.copytree(artifact("t"), copy)
    return copy


def _rewrite_manifest(directory: Path, edit) -> None:  # type: ignore[no-untyped-def]
    data = json.loads((directory / "manifest.json").read_text())
    edit(data)
    (directory / "manifest.json").write_text(json.dumps(data))


def test_missing_onnx_file(damaged: Path) -> None:
    (damaged / "onnx" / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"model\.onnx: missing"):
        build_model(damaged, precision="fp32")


def test_flipped_byte_is_detected(damaged: Path) -> None:
    data = bytearray((damaged / "onnx" / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (damaged / "onnx" / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"model\.onnx: checksum mismatch"):
        build_model(damaged, precision="fp32")


def test_truncated_onnx_with_matching_checksum_fails_to_load(damaged: Path) -> None:
    from jina_onnx.manifest import sha256_file

    path = damaged / "onnx" / "model.onnx"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    _rewrite_manifest(damaged, lambda m: m["variants"]["fp32"].update(sha256=sha256_file(path)))
    with pytest.raises(ArtifactError, match=r"model\.onnx: ONNX Runtime cannot load it"):
        build_model(damaged, precision="fp32")


def test_a_damaged_graph_is_refused_by_its_checksum_not_by_what_fails_on_it(damaged: Path) -> None:
    # The session builds while the file is hashed (artifact.open_checked): ONNX Runtime fails on the cut file,
    # and the error names the cause, the checksum, not the parse failure it led to.
    path = damaged / "onnx" / "model.onnx"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(ArtifactError, match=r"model\.onnx: checksum mismatch") as caught:
        build_model(damaged, precision="fp32")
    assert "ONNX Runtime cannot load it" in str(caught.value.__cause__)


def test_a_first_load_opens_one_tokenizer_for_all_its_candidates(artifact, tmp_path, monkeypatch) -> None:
    from jina_onnx import model as model_module

    monkeypatch.setenv("JINA_ONNX_HOME", str(tmp_path))
    monkeypatch.setenv("JINA_ONNX_BACKEND", "onnxruntime")
    opened: list[Path] = []

    class Counted(model_module.TextTokenizer):  # type: ignore[misc, name-defined]
        def __init__(self, path: Path, *args: object) -> None:
            opened.append(path)
            super().__init__(path, *args)

    monkeypatch.setattr(model_module, "TextTokenizer", Counted)
    from jina_onnx.engines import checks

    measured: list[str] = []
    timed = checks.measure

    def measure(models, objective):  # type: ignore[no-untyped-def]
        measured.extend(model.precision for model in models)
        return timed(models, objective)

    monkeypatch.setattr(checks, "measure", measure)
    model = build_model(artifact("t"), device="cpu")
    assert len(measured) == 2 and model.precision in measured  # it measured two candidates...
    assert len(opened) == 1 and model.tokenizer.path == opened[0]  # ...with one tokenizer
    assert model.encode(SEED).shape == (2, 312)


def test_missing_or_foreign_tokenizer(damaged: Path, artifact) -> None:
    (damaged / "tokenizer.json").unlink()
    with pytest.raises(ArtifactError, match=r"tokenizer\.json: missing"):
        build_model(damaged, precision="fp32")
    shutil.copy(artifact("s") / "tokenizer.json", damaged / "tokenizer.json")  # a T5 vocabulary
    from jina_onnx.manifest import sha256_file

    _rewrite_manifest(damaged, lambda m: m["tokenizer"].update(sha256=sha256_file(damaged / "tokenizer.json")))
    with pytest.raises(ArtifactError, match="belongs to another model"):
        build_model(damaged, precision="fp32")


def test_manifest_problems(damaged: Path) -> None:
    _rewrite_manifest(damaged, lambda m: m.update(dim=768))
    with pytest.raises(ArtifactError, match="width 312 but the manifest says dim 768"):
        build_model(damaged, precision="fp32")
    _rewrite_manifest(damaged, lambda m: m.update(dim=312, schema_version=99))
    with pytest.raises(ArtifactError, match="schema_version 99 is newer"):
        build_model(damaged, precision="fp32")
    _rewrite_manifest(damaged, lambda m: m.update(schema_version=1, pooling="weird"))
    with pytest.raises(ArtifactError, match="malformed manifest"):
        build_model(damaged, precision="fp32")
    _rewrite_manifest(damaged, lambda m: (m.update(pooling="mean"), m["variants"]["fp32"].update(file="../x.onnx")))
    with pytest.raises(ArtifactError, match="outside the artifact directory"):
        build_model(damaged, precision="fp32")
    (damaged / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"manifest\.json: unreadable"):
        build_model(damaged, precision="fp32")


def test_numpy_pooling_fallback_matches_graph_pooling(t_model) -> None:
    from jina_onnx.manifest import Pooling
    from jina_onnx.pooling import pool

    ids = [t_model.tokenizer.tokenize(SEED).ids[i] for i in range(2)]
    input_ids, mask = t_model.tokenizer.pad(ids)
    feed = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
    pooled, tokens = t_model.session.run(["sentence_embedding", "last_hidden_state"], feed)
    assert np.abs(pool(tokens, mask, Pooling.MEAN) - pooled).max() < 1e-5
