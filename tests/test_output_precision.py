"""Output precisions: bit-identical to sentence-transformers' quantize_embeddings on the same vectors and ranges,
calibrated at export, and the same words in encode, the CLI, the server and the corpus job."""

from __future__ import annotations

import base64
import json
import shutil

import numpy as np
import pytest
from sentence_transformers.util.quantization import quantize_embeddings

from jina_onnx import ArtifactError, InputError, build_model
from jina_onnx.quantize import OUTPUT_PRECISIONS

TEXTS = ["how is the weather today", "What is the current weather like today?", "a third, rather different text"]


@pytest.mark.parametrize("normalize", [False, True])
def test_every_precision_is_bit_identical_to_sentence_transformers(artifact, normalize: bool) -> None:
    model = build_model(artifact("t"), device="cpu", precision="fp32")
    vectors = model.encode(TEXTS, normalize=normalize)
    ranges = np.asarray(model.manifest.output_ranges["normalized" if normalize else "raw"], dtype=np.float32)
    assert ranges.shape == (2, 312) and (ranges[0] <= ranges[1]).all()
    for precision in OUTPUT_PRECISIONS:
        got = model.encode(TEXTS, normalize=normalize, output_precision=precision)
        if precision == "float16":
            expected = vectors.astype(np.float16)  # sentence-transformers has no float16: numpy's cast
        else:
            expected = quantize_embeddings(vectors, precision=precision, ranges=ranges)
        assert got.dtype == expected.dtype and got.shape == expected.shape, precision
        assert np.array_equal(got, expected), precision
    assert model.encode(TEXTS, output_precision="binary").shape == (3, 312 // 8)


def test_ranges_are_stored_at_export_and_old_artifacts_say_how_to_get_them(artifact, tmp_path) -> None:
    directory = shutil.copytree(artifact("t"), tmp_path / "old")
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["output_ranges"]["calibration"].startswith("600 sentences")
    del manifest["output_ranges"]  # as exported before ranges were measured
    (directory / "manifest.json").write_text(json.dumps(manifest))
    model = build_model(directory, device="cpu", precision="fp32")
    with pytest.raises(ArtifactError, match="re-export the model"):
        model.encode(TEXTS, output_precision="int8")
    assert model.encode(TEXTS, output_precision="ubinary").dtype == np.uint8  # needs no ranges
    with pytest.raises(InputError, match="output_precision='int4' is not one of"):
        model.encode(TEXTS, output_precision="int4")


def test_server_answers_each_precision(artifact) -> None:
    import httpx

    from tests.test_server import server

    model = build_model(artifact("t"), device="cpu", precision="fp32")
    with server("-m", str(artifact("t")), "--precision", "fp32") as (url, _):
        for precision in ("float16", "int8", "ubinary"):
            expected = model.encode(TEXTS, output_precision=precision)
            body = {"input": TEXTS, "output_precision": precision}
            floats = httpx.post(f"{url}/v1/embeddings", json=body, timeout=60).json()
            assert np.array_equal(np.array([d["embedding"] for d in floats["data"]], dtype=expected.dtype), expected)
            packed = httpx.post(f"{url}/v1/embeddings", json=body | {"encoding_format": "base64"}, timeout=60).json()
            dtype = expected.dtype.newbyteorder("<")
            decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype=dtype) for d in packed["data"]]
            assert np.array_equal(np.stack(decoded), expected)
            tei = httpx.post(f"{url}/embed", json={"inputs": TEXTS, "normalize": False, "output_precision": precision})
            assert np.array_equal(np.array(tei.json(), dtype=expected.dtype), expected)
        half = httpx.post(
            f"{url}/v1/embeddings", json={"input": TEXTS, "output_precision": "float16", "encoding_format": "base64"}
        ).json()
        decoded = np.frombuffer(base64.b64decode(half["data"][0]["embedding"]), "<f2")
        np.testing.assert_allclose(decoded, model.encode(TEXTS[:1])[0], rtol=1e-3, atol=1e-4)  # fp16 rounding


def test_cli_and_corpus_job_write_the_precision(artifact, tmp_path, capsys) -> None:
    import pyarrow.parquet as pq

    from jina_onnx.cli import main
    from jina_onnx.corpus import embed_files

    model = build_model(artifact("t"), device="cpu", precision="fp32")
    options = ["-m", str(artifact("t")), "--precision", "fp32", "--device", "cpu"]
    assert main(["-q", "encode", *options, "--output-precision", "int8", TEXTS[0]]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["embedding"] == model.encode(TEXTS[:1], output_precision="int8")[0].tolist()
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    manifest = embed_files(source, tmp_path / "out", model=model, output_precision="ubinary")
    assert manifest["output_precision"] == "ubinary"
    table = pq.read_table(tmp_path / "out")
    assert str(table.schema.field("embedding").type) == "fixed_size_list<element: uint8>[39]"
    stored = table["embedding"].combine_chunks().flatten().to_numpy().reshape(3, -1)
    assert np.array_equal(stored, model.encode(TEXTS, output_precision="ubinary"))
