"""`glode tag`: a saved span model on new text, decoded as evaluation decodes it.

The model is the random `tiny_backbone` with its span heads as initialised (scaled, so that the
decoded entities are of several types and leave some words O): the predictions mean nothing,
what is tested is that `glode tag` reads, decodes and writes them as the pipeline does.
"""

from __future__ import annotations

import io
import json
import sys

import pytest
import torch
from conftest import CLASSES, synthetic_sentences, write_sentences, write_spans

from glode import tag
from glode.tagger import Tagger, span_settings_of
from glode.io import GlodeInputError


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_backbone):
    """A span model saved as train-source saves one (glode_training.json with its span settings)."""
    from glode.model import SpanModel, load_tokenizer
    from glode.training import save_model_dir

    torch.manual_seed(0)
    model = SpanModel.from_backbone(tiny_backbone, CLASSES)
    with torch.no_grad():  # sharper, more varied class distributions than the initial ones
        model.classifier.weight.mul_(30.0)
        model.classifier.bias.copy_(torch.tensor([2.0, 0.0, 0.0, 0.0, 0.0]))
    out = tmp_path_factory.mktemp("tag_model") / "model"
    save_model_dir(out, model.eval(), load_tokenizer(tiny_backbone), {"span_settings": {"max_span_len": 4, "max_seq_len": 128}})
    return out


def run_tag(model_dir, *args: str) -> int:
    return tag.main(["--model", str(model_dir), "--device", "cpu", "--quiet", *args])


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def entity_key(entity: dict) -> tuple:
    return entity["start_token"], entity["end_token"] - 1, entity["type"]


def check_offsets(record: dict) -> None:
    """Every entity's character span is its text, and starts and ends where its words do."""
    for entity in record["entities"]:
        text = record["text"][entity["start_char"] : entity["end_char"]]
        assert text == entity["text"]
        assert text.startswith(record["tokens"][entity["start_token"]])
        assert text.endswith(record["tokens"][entity["end_token"] - 1])


def write_conll_file(path, sentences) -> None:
    """word POS tag columns, a -DOCSTART- line first, as the benchmark files are."""
    lines = ["-DOCSTART- -X- O", ""]
    for tokens, tags in zip(sentences["tokens"], sentences["tags"]):
        lines += [f"{word} NN {t}" for word, t in zip(tokens, tags)] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_conll_input_gives_the_entities_of_pseudo_label_and_evaluate(model_dir, tiny_backbone, tmp_path):
    from glode import pseudo_label
    from glode.evaluate import decode_entities, entities_to_bio
    from glode.model import load_tokenizer

    sentences = synthetic_sentences(20, seed=7)
    long = ["word"] * 150  # past the 128-subword window: its last words are in no span
    sentences.loc[len(sentences)] = {"sent_id": 20, "line": 999, "tokens": long, "tags": ["O"] * 150}
    conll = tmp_path / "test.conll"
    write_conll_file(conll, sentences)
    write_sentences(sentences, tmp_path / "test.parquet", "xx", "test", "target", labeled=True)
    write_spans(sentences, tmp_path / "test.spans.parquet", load_tokenizer(tiny_backbone), labeled=True)

    assert run_tag(model_dir, "--input", str(conll), "--out", str(tmp_path / "tagged.jsonl"), "--batch-size", "5") == 0
    assert pseudo_label.main(["--model", str(model_dir), "--sentences", str(tmp_path / "test.parquet"), "--spans", str(tmp_path / "test.spans.parquet"),
                              "--out", str(tmp_path / "pred.parquet"), "--device", "cpu", "--batch-size", "5"]) == 0  # fmt: skip
    import pandas as pd

    expected = decode_entities(pd.read_parquet(tmp_path / "pred.parquet"), CLASSES)
    records = read_jsonl(tmp_path / "tagged.jsonl")
    assert [r["tokens"] for r in records] == [list(t) for t in sentences["tokens"]]
    assert [r["id"] for r in records] == list(range(len(sentences)))
    for sent_id, record in enumerate(records):
        assert {entity_key(e) for e in record["entities"]} == {(b, e, label) for b, e, label, _ in expected[sent_id]}
        assert sorted(e["prob"] for e in record["entities"]) == pytest.approx(sorted(p for *_, p in expected[sent_id]), abs=1e-6)
        assert record["text"] == " ".join(record["tokens"])
        check_offsets(record)
    found = [e for r in records for e in r["entities"]]
    assert len({e["type"] for e in found}) > 1 and sum(len(r["tokens"]) for r in records) > sum(e["end_token"] - e["start_token"] for e in found)
    assert max(e["end_token"] for e in records[-1]["entities"]) < 150  # the truncated words stay O

    assert run_tag(model_dir, "--input", str(conll), "--out", str(tmp_path / "tagged.conll"), "--batch-size", "5") == 0
    blocks = (tmp_path / "tagged.conll").read_text(encoding="utf-8").split("\n\n")
    assert blocks[-1] == "" and len(blocks) == len(sentences) + 1
    for sent_id, block in enumerate(blocks[:-1]):
        words, tags = zip(*(line.split("\t") for line in block.split("\n")))
        assert list(words) == list(sentences["tokens"][sent_id])
        assert list(tags) == entities_to_bio(len(words), expected[sent_id])


def test_text_input_with_irregular_spacing_keeps_char_offsets(model_dir, tmp_path):
    lines = ["  Angela Merkel   visited\tMadrid  on Monday .  ", "", "   ", "John Smith said the  EU and Real Madrid were a success in 1996 .", "Berlin"]
    source = tmp_path / "news.txt"
    source.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")  # CRLF too
    assert run_tag(model_dir, "--input", str(source), "--out", str(tmp_path / "news.jsonl")) == 0
    records = read_jsonl(tmp_path / "news.jsonl")
    assert [r["text"] for r in records] == [lines[0], lines[3], lines[4]]  # blank lines skipped
    assert [r["id"] for r in records] == [0, 1, 2]
    assert records[0]["tokens"] == ["Angela", "Merkel", "visited", "Madrid", "on", "Monday", "."]
    for record in records:
        check_offsets(record)
    multi_word = [e for r in records for e in r["entities"] if e["end_token"] - e["start_token"] > 1]
    assert multi_word and any(" " in e["text"] or "\t" in e["text"] for e in multi_word)


def test_chars_tokenizer(model_dir, tmp_path):
    source = tmp_path / "zh.jsonl"
    source.write_text(json.dumps({"id": "zh-1", "text": "北京 是中国的首都。"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert run_tag(model_dir, "--input", str(source), "--tokenizer", "chars", "--out", str(tmp_path / "zh.jsonl.out"), "--out-format", "jsonl") == 0
    (record,) = read_jsonl(tmp_path / "zh.jsonl.out")
    assert record["id"] == "zh-1" and record["tokens"] == list("北京是中国的首都。")
    assert record["entities"]
    check_offsets(record)
    assert tag.char_words("a b") == [("a", 0, 1), ("b", 2, 3)]


def test_jsonl_input_carries_ids_and_takes_a_text_key(model_dir, tmp_path):
    source = tmp_path / "docs.jsonl"
    rows = [{"id": "a", "body": "Angela Merkel visited Madrid ."}, {"body": "Real  Madrid won"}, {"id": 7, "body": ""}, {"id": None, "body": "the EU"}]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    out = tmp_path / "docs.out.jsonl"
    assert run_tag(model_dir, "--input", str(source), "--text-key", "body", "--out", str(out)) == 0
    records = read_jsonl(out)
    assert [r["id"] for r in records] == ["a", 1, 7, 3]  # no id: the sentence's index
    assert [r["text"] for r in records] == [r["body"] for r in rows]
    assert records[2]["tokens"] == [] and records[2]["entities"] == []
    for record in records:
        check_offsets(record)


def test_stdin_to_stdout(model_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("Angela Merkel visited Madrid .\n\nthe EU\n"))
    assert run_tag(model_dir) == 0
    blocks = capsys.readouterr().out.split("\n\n")
    assert blocks[-1] == "" and [[line.split("\t")[0] for line in b.split("\n")] for b in blocks[:-1]] == [["Angela", "Merkel", "visited", "Madrid", "."], ["the", "EU"]]
    assert all(line.split("\t")[1][:2] in {"O", "B-", "I-"} for b in blocks[:-1] for line in b.split("\n"))


def test_not_a_model_directory(model_dir, tiny_backbone, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("Madrid\n", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"model_type": "glode_span_model"}), encoding="utf-8")
    cases = {tiny_backbone: "'bert' model", tmp_path / "empty": "no config.json", tmp_path / "missing": "not a directory", tmp_path / "other": "lacks the span-model fields"}
    for path, problem in cases.items():
        with pytest.raises(GlodeInputError, match="train-source") as err:
            run_tag(path, "--input", str(source))
        assert str(path) in str(err.value) and problem in str(err.value)


def test_bad_jsonl_line_names_its_line_and_writes_nothing(model_dir, tmp_path):
    source = tmp_path / "bad.jsonl"
    source.write_text('{"text": "Madrid"}\n\n{"text": "Berlin"\n', encoding="utf-8")
    out = tmp_path / "out" / "tagged.jsonl"
    with pytest.raises(GlodeInputError, match=r"bad.jsonl:3: not valid JSON"):
        run_tag(model_dir, "--input", str(source), "--out", str(out))
    source.write_text('{"id": 1, "text": "Madrid"}\n["Berlin"]\n', encoding="utf-8")
    with pytest.raises(GlodeInputError, match=r"bad.jsonl:2: expected a JSON object"):
        run_tag(model_dir, "--input", str(source), "--out", str(out))
    source.write_text('{"txt": "Madrid"}\n', encoding="utf-8")
    with pytest.raises(GlodeInputError, match=r"bad.jsonl:1: no 'text' string"):
        run_tag(model_dir, "--input", str(source), "--out", str(out))
    source = tmp_path / "bad.txt"  # plain text: a line that is not UTF-8, counted with the empty lines
    source.write_bytes(b"Madrid\n\nBerlin \xff\n")
    with pytest.raises(GlodeInputError, match=r"bad.txt:3: .* not UTF-8"):
        run_tag(model_dir, "--input", str(source), "--out", str(out))
    assert not out.exists() and (not out.parent.exists() or not list(out.parent.iterdir()))


def test_input_format_comes_from_the_suffix_or_the_flag(model_dir, tmp_path):
    source = tmp_path / "words.dat"
    source.write_text("Madrid\tB-LOC\n", encoding="utf-8")
    with pytest.raises(GlodeInputError, match="give --format"):
        run_tag(model_dir, "--input", str(source))
    assert run_tag(model_dir, "--input", str(source), "--format", "conll", "--out", str(tmp_path / "out.jsonl")) == 0
    assert read_jsonl(tmp_path / "out.jsonl")[0]["tokens"] == ["Madrid"]


def test_span_settings_from_the_model_directory_else_the_options(model_dir, tmp_path, caplog):
    assert span_settings_of(model_dir, 4, None, None) == span_settings_of(model_dir, 4, 4, 128)
    with caplog.at_level("WARNING"):
        settings = span_settings_of(model_dir, 4, 2, 64)
    assert (settings.max_span_len, settings.max_seq_len) == (4, 128) and "--max-span-len 2 ignored" in caplog.text
    bare = tmp_path / "bare"  # a model directory without glode_training.json
    bare.mkdir()
    assert (span_settings_of(bare, 4, None, None).max_span_len, span_settings_of(bare, 4, None, None).max_seq_len) == (4, 128)
    assert (span_settings_of(bare, 4, 2, 64).max_span_len, span_settings_of(bare, 4, 2, 64).max_seq_len) == (2, 64)
    with pytest.raises(GlodeInputError, match="spans of 1..4 words"):
        span_settings_of(bare, 4, 5, None)


def test_joined_tokenisation_is_the_default_of_a_model_trained_so_and_matches_pseudo_label(model_dir, tiny_backbone, tmp_path):
    import shutil

    import pandas as pd

    from glode import pseudo_label
    from glode.evaluate import decode_entities
    from glode.io import write_parquet
    from glode.model import load_tokenizer
    from glode.spans import build_span_table

    joined_model = tmp_path / "zh_model"
    shutil.copytree(model_dir, joined_model)
    summary = json.loads((joined_model / "glode_training.json").read_text())
    (joined_model / "glode_training.json").write_text(json.dumps({**summary, "target_tokenisation": "joined"}))
    assert Tagger.load(model_dir, device="cpu").tokenisation == "words" and Tagger.load(joined_model, device="cpu").tokenisation == "joined"
    assert Tagger.load(joined_model, device="cpu", tokenisation="words").tokenisation == "words"

    texts = ["北京是中国的首都。", "上海很大"]
    source = tmp_path / "zh.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert run_tag(joined_model, "--input", str(source), "--tokenizer", "chars", "--out", str(tmp_path / "zh.jsonl")) == 0
    records = read_jsonl(tmp_path / "zh.jsonl")

    # the pipeline's way: a sentences file prepared with --tokenisation joined, its spans, pseudo-label
    sentences = pd.DataFrame({"sent_id": [0, 1], "line": [1, 2], "tokens": [list(t) for t in texts]})
    write_parquet(sentences, tmp_path / "zh.parquet", {"tokenisation": "joined", "labeled": False})
    sentences.attrs["glode"] = {"tokenisation": "joined"}
    spans, _ = build_span_table(sentences, load_tokenizer(tiny_backbone), 4, 128)
    write_parquet(spans, tmp_path / "zh.spans.parquet", {"max_span_len": 4, "max_seq_len": 128, "tokenisation": "joined"})
    assert pseudo_label.main(["--model", str(joined_model), "--sentences", str(tmp_path / "zh.parquet"), "--spans", str(tmp_path / "zh.spans.parquet"),
                              "--out", str(tmp_path / "pred.parquet"), "--device", "cpu"]) == 0  # fmt: skip
    expected = decode_entities(pd.read_parquet(tmp_path / "pred.parquet"), CLASSES)
    for sent_id, record in enumerate(records):
        assert {entity_key(e) for e in record["entities"]} == {(b, e, label) for b, e, label, _ in expected.get(sent_id, [])}
    assert any(r["entities"] for r in records)
    # and the words mode sees other pieces, so other probabilities
    assert run_tag(joined_model, "--input", str(source), "--tokenizer", "chars", "--tokenisation", "words", "--out", str(tmp_path / "w.jsonl")) == 0
    assert [e["prob"] for r in read_jsonl(tmp_path / "w.jsonl") for e in r["entities"]] != [e["prob"] for r in records for e in r["entities"]]
