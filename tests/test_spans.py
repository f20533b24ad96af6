"""Span enumeration: morphology classes, span lists, the subword window and unreachable gold."""

from __future__ import annotations

import pandas as pd
import pytest

from glode.spans import build_span_table, enumerate_spans, morph_class, word_subword_bounds
from glode.tokenizer import load_offline_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_offline_tokenizer()


@pytest.mark.parametrize(
    "word, expected",
    [("USA", 0), ("A", 0), ("house", 1), ("Berlin", 2), ("1996", 3), ("3-1", 4), ("北京", 4), ("iPhone", 4), (",", 4), ("McDonald", 4)],
)
def test_morph_class_order(word, expected):
    assert morph_class(word) == expected


def test_enumerate_spans_counts_and_order():
    starts, ends = enumerate_spans(5, 4)
    # 5 + 4 + 3 + 2 spans of width 1..4
    assert len(starts) == 14
    assert list(zip(starts[:5].tolist(), ends[:5].tolist())) == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 1)]
    assert ((ends - starts) < 4).all()
    assert enumerate_spans(2, 4)[0].tolist() == [0, 0, 1]


def test_word_subword_bounds_window():
    # <s> w0 w0 w1 w2 w2 w2 </s> : with max_seq_len 6 positions 0..4 hold <s> and words.
    word_ids = [None, 0, 0, 1, 2, 2, 2, None]
    assert word_subword_bounds(word_ids, 3, 64) == [(1, 2), (3, 3), (4, 6)]
    # window of 6: </s> at position 5, so w2 (positions 4..6) is cut and unreachable
    assert word_subword_bounds(word_ids, 3, 6) == [(1, 2), (3, 3), None]


def test_word_without_subwords_is_unreachable():
    assert word_subword_bounds([None, 0, 2, None], 3, 64) == [(1, 1), None, (2, 2)]


def test_span_table_labels_and_unreachable(tokenizer):
    sentences = pd.DataFrame(
        {
            "sent_id": [0, 1],
            "tokens": [
                ["Angela", "Merkel", "visited", "the", "Bank", "of", "New", "York", "Mellon", "today"],
                ["Paris", "is", "nice"],
            ],
            "tags": [
                ["B-PER", "I-PER", "O", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG", "I-ORG", "O"],
                ["B-LOC", "O", "O"],
            ],
        }
    )
    table, stats = build_span_table(sentences, tokenizer, max_span_len=4, max_seq_len=128)
    assert stats["gold_entities"] == 3
    assert stats["unreachable_too_long"] == 1  # "Bank of New York Mellon" has 5 words
    assert stats["unreachable_truncated"] == 0
    assert len(table) == (10 + 9 + 8 + 7) + (3 + 2 + 1)
    entities = table[table["label"] != "O"]
    assert sorted(zip(entities["sent_id"], entities["start"], entities["end"], entities["label"])) == [(0, 0, 1, "PER"), (1, 0, 0, "LOC")]
    row = table[(table["sent_id"] == 0) & (table["start"] == 0) & (table["end"] == 2)].iloc[0]
    assert list(row["morph"]) == [2, 2, 1] and row["width"] == 3


def test_span_table_truncation_counts(tokenizer):
    words = ["Berlin"] + ["word"] * 200 + ["Paris"]
    tags = ["B-LOC"] + ["O"] * 200 + ["B-LOC"]
    sentences = pd.DataFrame({"sent_id": [7], "tokens": [words], "tags": [tags]})
    table, stats = build_span_table(sentences, tokenizer, max_span_len=2, max_seq_len=32)
    assert stats["truncated_sentences"] == 1
    assert stats["unreachable_truncated"] == 1  # Paris lies past the 32-subword window
    assert table["end"].max() < 31
    assert (table["label"] == "LOC").sum() == 1


def test_unlabeled_split_has_null_labels(tokenizer):
    sentences = pd.DataFrame({"sent_id": [0], "tokens": [["Hallo", "Welt"]]})
    table, stats = build_span_table(sentences, tokenizer)
    assert table["label"].isna().all()
    assert stats["gold_entities"] is None


def test_span_settings_come_from_the_spans_files_and_must_agree(tmp_path):
    """Training and prediction take max_span_len / max_seq_len from the spans files' metadata only."""
    from glode.io import GlodeInputError, write_parquet
    from glode.spans import SpanSettings, read_span_settings

    table = pd.DataFrame({"sent_id": [0], "start": [0], "end": [0]})
    write_parquet(table, tmp_path / "a.parquet", metadata={"max_span_len": 4, "max_seq_len": 128})
    write_parquet(table, tmp_path / "b.parquet", metadata={"max_span_len": 4, "max_seq_len": 128})
    write_parquet(table, tmp_path / "wide.parquet", metadata={"max_span_len": 6, "max_seq_len": 128})
    write_parquet(table, tmp_path / "bare.parquet", metadata={"lang": "xx"})
    assert read_span_settings(tmp_path / "a.parquet", tmp_path / "b.parquet") == SpanSettings(max_span_len=4, max_seq_len=128)
    with pytest.raises(GlodeInputError, match=r"wide\.parquet.*max_span_len=6.*a\.parquet.*max_span_len=4"):
        read_span_settings(tmp_path / "a.parquet", tmp_path / "wide.parquet")
    with pytest.raises(GlodeInputError, match=r"bare\.parquet.*no max_span_len or max_seq_len"):
        read_span_settings(tmp_path / "bare.parquet")


def test_unreachable_share_is_logged_and_warned_above_the_threshold(caplog):
    from glode.spans import report_unreachable

    stats = {"gold_entities": 40, "unreachable_too_long": 5, "unreachable_truncated": 1, "max_span_len": 4, "max_seq_len": 128}
    with caplog.at_level("INFO", logger="glode.spans"):
        report_unreachable("xx/test.parquet", stats, warn_above=0.05)
        report_unreachable("xx/test.parquet", stats, warn_above=0.20)
        report_unreachable("xx/train.parquet", {**stats, "gold_entities": None}, warn_above=0.05)  # hidden gold: nothing
    warning, info = caplog.records
    assert warning.levelname == "WARNING" and "15.0% of 40 gold entities can never be predicted (5 longer than max_span_len 4, 1 past" in warning.message
    assert "recall on this file is at most 85.0%" in warning.message
    assert info.levelname == "INFO" and "15.0% of 40" in info.message


def chinese_sentences(tokenisation):
    sentences = pd.DataFrame({"sent_id": [3], "tokens": [list("北京是中国的首都")], "tags": [["B-LOC", "I-LOC", "O", "B-LOC", "I-LOC", "O", "O", "O"]]})
    sentences.attrs["glode"] = {"tokenisation": tokenisation}
    return sentences


def test_joined_tokenisation_maps_pieces_back_to_characters(tokenizer):
    from glode.spans import encode_words

    words = list("北京是中国的首都")
    encoded = encode_words(tokenizer, [words], "joined")
    # the pieces of the string itself, not one "▁" + character pair per character
    assert encoded["input_ids"][0] == tokenizer("北京是中国的首都")["input_ids"]
    pieces = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    assert pieces == ["<s>", "▁", "北京", "是中国", "的", "首都", "</s>"]
    # hand-derived: "▁" and "北京" cover characters 0-1; "是中国" covers 2-4 (one piece, three words)
    assert encoded.word_ids(0) == [None, 0, (0, 1), (2, 4), 5, (6, 7), None]
    bounds = word_subword_bounds(encoded.word_ids(0), len(words), 128)
    assert bounds == [(1, 2), (2, 2), (3, 3), (3, 3), (3, 3), (4, 4), (5, 5), (5, 5)]
    words_mode = encode_words(tokenizer, [words], "words")
    assert len(words_mode["input_ids"][0]) == 2 + 2 * len(words)  # "▁" + character, every character


def test_joined_window_cuts_a_piece_as_a_whole():
    # positions: <s>, a piece covering words 0-1, a piece covering words 2-3 past the window, </s>
    assert word_subword_bounds([None, (0, 1), (2, 3), None], 4, 3) == [(1, 1), (1, 1), None, None]


@pytest.mark.parametrize("tokenisation", ["words", "joined"])
def test_span_table_and_items_agree_in_both_tokenisations(tokenizer, tokenisation):
    from glode.batching import build_items

    sentences = chinese_sentences(tokenisation)
    table, stats = build_span_table(sentences, tokenizer, max_span_len=2, max_seq_len=128)
    assert stats["tokenisation"] == tokenisation and stats["unreachable_too_long"] == 0
    assert len(table) == 8 + 7  # every character n-gram up to 2 is a candidate in both modes
    items = build_items(sentences, tokenizer, 128, table, max_span_len=2)
    expected = tokenizer("北京是中国的首都")["input_ids"] if tokenisation == "joined" else tokenizer(list("北京是中国的首都"), is_split_into_words=True)["input_ids"]
    assert items[0]["input_ids"].tolist() == expected
    china = table.index[(table["start"] == 3) & (table["end"] == 4)][0]
    row = list(items[0]["span_rows"]).index(china)
    first, last = items[0]["span_start"][row], items[0]["span_end"][row]
    assert (first, last) == ((3, 3) if tokenisation == "joined" else (7, 10))  # words: "▁" (7) opens "中"


def test_unknown_tokenisation_in_metadata_is_an_error(tokenizer):
    with pytest.raises(ValueError, match="unknown tokenisation 'chars'"):
        build_span_table(chinese_sentences("chars"), tokenizer)
