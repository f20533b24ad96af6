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
