"""Truncation under the caller's control, the same words everywhere: right (default), left, refuse."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from jina_onnx import InputError, InputTooLongError, TruncationWarning, build_model

LONG = " ".join(f"word{i}" for i in range(700))  # far more than 512 tokens in every tokenizer here


def hand_cut(model, text: str, side: str) -> list[int]:  # type: ignore[no-untyped-def]
    """The ids of `text` cut to the model maximum by hand: the special tokens stay, the content is cut."""
    untruncated = model.tokenizer._for_length(0)  # the tokenizer without truncation that count() uses
    full = untruncated.encode(text).ids
    content = untruncated.encode(text, add_special_tokens=False).ids
    start = full.index(content[0])  # what precedes the content: [CLS] for BERT, nothing for T5
    front, back = full[:start], full[start + len(content) :]
    keep = model.max_length - len(front) - len(back)
    return front + (content[:keep] if side == "right" else content[-keep:]) + back


@pytest.mark.parametrize("size", ["t", "s"])
def test_left_keeps_the_last_tokens_exactly_as_cutting_by_hand(artifact, size: str) -> None:
    model = build_model(artifact(size), device="cpu", precision="fp32")
    for side in ("right", "left"):
        ids = model.tokenizer.tokenize([LONG], side=side).ids[0]
        assert ids == hand_cut(model, LONG, side) and len(ids) == model.max_length
        with pytest.warns(TruncationWarning, match="1 of 2 inputs were longer than 512 tokens"):
            vectors = model.encode([LONG, "short"], truncation=side)
        expected = model.embed_token_ids([hand_cut(model, LONG, side)])
        np.testing.assert_allclose(vectors[:1], expected, atol=1e-5)
    assert not np.allclose(model.encode([LONG]), model.encode([LONG], truncation="left"))


def test_refuse_names_the_input_and_its_token_count(artifact) -> None:
    model = build_model(artifact("t"), device="cpu", precision="fp32")
    count = int(model.tokenizer.count([LONG])[0])
    with pytest.raises(
        InputTooLongError, match=rf"data\[2\] has {count} tokens, over the model.s limit of 512"
    ) as raised:
        model.encode(["a", "b", LONG], truncation="refuse")
    assert (raised.value.index, raised.value.tokens, raised.value.limit) == (2, count, 512)
    with pytest.raises(InputTooLongError, match=r"data\[5\] has"):  # counted across the stream's chunks
        list(model.encode_iter(["a", "b", "c", "d", "e", LONG], chunk_size=2, truncation="refuse"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is cut, so nothing is said
        assert model.encode(["a short text"], truncation="refuse").shape == (1, 312)
    with pytest.raises(InputError, match="truncation='middle' is not one of right, left, refuse"):
        model.encode(["a"], truncation="middle")


def test_count_tokens_is_what_encode_embeds(artifact) -> None:
    model = build_model(artifact("t"), device="cpu", precision="fp32")
    texts = ["how is the weather today", "", LONG, "a" * 50]
    counts = model.count_tokens(texts)
    assert counts.tolist() == [len(ids) for ids in model.tokenizer.tokenize(texts).ids]
    assert counts[2] == 512 and model.count_tokens(texts, max_length=16)[2] == 16
    with pytest.raises(InputTooLongError, match=r"data\[2\]"):
        model.count_tokens(texts, truncation="refuse")


def test_cli_encode_and_tokens_take_the_same_words(artifact, capsys) -> None:
    import json

    from jina_onnx.cli import main

    model = build_model(artifact("t"), device="cpu", precision="fp32")
    options = ["-m", str(artifact("t")), "--precision", "fp32", "--device", "cpu"]
    assert main(["-q", "encode", *options, "--truncation", "left", LONG]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    np.testing.assert_allclose(row["embedding"], model.encode([LONG], truncation="left")[0], atol=1e-6)
    assert main(["-q", "encode", *options, "--truncation", "refuse", "ok", LONG]) == 1
    assert "text 2 has" in capsys.readouterr().err  # in the CLI's words: the second text given
    assert main(["-q", "tokens", *options, "how is the weather today", LONG]) == 0
    counts = [json.loads(line)["tokens"] for line in capsys.readouterr().out.splitlines()]
    assert counts == model.count_tokens(["how is the weather today", LONG]).tolist()
    assert main(["-q", "tokens", *options, "--total", "how is the weather today", LONG]) == 0
    assert int(capsys.readouterr().out) == sum(counts)


def test_corpus_job_counts_cut_rows_and_can_refuse_them(artifact, tmp_path) -> None:
    import json

    import pyarrow.parquet as pq

    from jina_onnx.corpus import REJECTED, CorpusError, embed_files

    source = tmp_path / "in.txt"
    source.write_text(f"short text\n{LONG}\nanother\n")
    model = build_model(artifact("t"), device="cpu", precision="fp32")
    common = {"model": model, "keep_text": True}
    manifest = embed_files(source, tmp_path / "left", truncation="left", **common)
    assert manifest["truncated_this_run"] == 1 and manifest["truncation"] == "left" and manifest["rows"] == 3
    table = pq.read_table(tmp_path / "left")
    vectors = dict(zip(table["id"].to_pylist(), table["embedding"].to_numpy(zero_copy_only=False)))
    np.testing.assert_allclose(vectors["in.txt:1"], model.encode([LONG], truncation="left")[0], atol=1e-6)
    with pytest.raises(CorpusError, match=r"in\.txt: row 1 \(id in\.txt:1\): \d+ tokens, over the model's limit"):
        embed_files(source, tmp_path / "stop", truncation="refuse", **common)
    manifest = embed_files(source, tmp_path / "skip", truncation="refuse", on_bad_row="skip", **common)
    assert manifest["rows"] == 2 and manifest["rejected"] == 1
    (rejected,) = [json.loads(line) for line in (tmp_path / "skip" / REJECTED).read_text().splitlines()]
    assert rejected["id"] == "in.txt:1" and "--truncation refuse" in rejected["reason"]
