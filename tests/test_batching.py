"""Items, the length-bucketed batch sampler and the collate of glode.batching."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from glode.batching import LengthBucketBatchSampler, SpanCollator, build_items, padded_morph, read_spans
from glode.io import GlodeInputError, write_parquet
from glode.model import MORPH_PAD

CLASSES = ["O", "PER", "LOC", "ORG", "MISC"]


@pytest.fixture(scope="module")
def tokenizer(tiny_backbone):
    from glode.model import load_tokenizer

    return load_tokenizer(tiny_backbone)


@pytest.fixture(scope="module")
def sentences():
    return pd.DataFrame(
        {
            "sent_id": [0, 1, 2],
            "line": [1, 9, 14],
            "tokens": [["John", "Smith", "lives", "in", "Düsseldorf", "."], ["EU", "rejects", "German", "call"], ["Hi"]],
            "tags": [["B-PER", "I-PER", "O", "O", "B-LOC", "O"], ["B-ORG", "O", "B-MISC", "O"], ["O"]],
        }
    )


@pytest.fixture(scope="module")
def spans(sentences, tokenizer):
    from glode.spans import build_span_table

    return build_span_table(sentences, tokenizer, max_span_len=4, max_seq_len=128)[0]


def test_items_agree_with_the_span_table_on_subword_positions(sentences, spans, tokenizer):
    from glode.spans import encode_words, word_subword_bounds

    items = build_items(sentences, tokenizer, 128, spans, CLASSES)
    encoded = encode_words(tokenizer, sentences["tokens"].tolist())
    for row, item in enumerate(items):
        assert item["input_ids"].tolist() == encoded["input_ids"][row]
        bounds = word_subword_bounds(encoded.word_ids(row), len(sentences["tokens"][row]), 128)
        table = spans.iloc[item["span_rows"]]
        assert (table["sent_id"] == item["sent_id"]).all()
        for (start, end), s_sub, e_sub in zip(zip(table["start"], table["end"]), item["span_start"], item["span_end"]):
            assert (s_sub, e_sub) == (bounds[start][0], bounds[end][1])
    assert sum(len(it["span_rows"]) for it in items) == len(spans)
    # gold labels as class ids: "John Smith" is PER, "Düsseldorf" LOC
    first = spans.iloc[items[0]["span_rows"]]
    labels = dict(zip(zip(first["start"], first["end"]), items[0]["labels"]))
    assert labels[(0, 1)] == 1 and labels[(4, 4)] == 2 and labels[(0, 0)] == 0


def test_window_keeps_eos_and_rejects_unreachable_spans(sentences, tokenizer):
    from glode.spans import build_span_table

    window = 6  # <s> + 4 subwords + </s>
    table, _ = build_span_table(sentences, tokenizer, max_span_len=4, max_seq_len=window)
    items = build_items(sentences, tokenizer, window, table, CLASSES)
    for item in items:
        assert len(item["input_ids"]) <= window
        assert item["input_ids"][-1] == tokenizer.eos_token_id and item["input_ids"][0] == tokenizer.bos_token_id
        if len(item["span_end"]):
            assert item["span_end"].max() < len(item["input_ids"]) - 1
    full, _ = build_span_table(sentences, tokenizer, max_span_len=4, max_seq_len=128)
    with pytest.raises(GlodeInputError, match="outside the encoder window"):
        build_items(sentences, tokenizer, window, full, CLASSES)


def test_unknown_label_and_sentence_are_input_errors(sentences, spans, tokenizer):
    bad = spans.copy()
    bad["label"] = bad["label"].astype(object)
    bad.loc[0, "label"] = "EVENT"
    with pytest.raises(GlodeInputError, match="EVENT"):
        build_items(sentences, tokenizer, 128, bad, CLASSES)
    with pytest.raises(GlodeInputError, match="sent_id 2"):
        build_items(sentences.iloc[:2], tokenizer, 128, spans, CLASSES)


def test_padded_morph():
    df = pd.DataFrame({"morph": pd.Series([[2], [2, 1, 0], [4, 4, 4, 3]], dtype=pd.ArrowDtype(pa.list_(pa.int8())))})
    out = padded_morph(df, 4)
    P = MORPH_PAD
    assert out.tolist() == [[2, P, P, P], [2, 1, 0, P], [4, 4, 4, 3]]
    with pytest.raises(GlodeInputError):
        padded_morph(df, 3)


def test_read_spans_reads_what_glode_spans_writes(spans, tmp_path):
    import pyarrow.parquet as pq

    path = tmp_path / "spans.parquet"
    write_parquet(spans, path, metadata={"max_seq_len": 128})  # as `glode spans` does
    old_style = tmp_path / "old.parquet"  # with pandas' own metadata, which pandas 3 cannot parse
    pq.write_table(pa.Table.from_pandas(spans, preserve_index=False), old_style)
    for p in (path, old_style):
        back = read_spans(p)
        assert back["sent_id"].tolist() == spans["sent_id"].tolist()
        assert [list(m) for m in back["morph"]] == [list(m) for m in spans["morph"]]
        assert back["label"].tolist() == spans["label"].tolist()
        assert np.array_equal(padded_morph(back, 4), padded_morph(spans, 4))


def test_collate(sentences, spans, tokenizer):
    items = build_items(sentences, tokenizer, 128, spans, CLASSES, soft_targets=np.full((len(spans), 5), 0.2, dtype=np.float32))
    batch = SpanCollator(tokenizer.pad_token_id)([items[2], items[0]])
    n0, n2 = len(items[0]["input_ids"]), len(items[2]["input_ids"])
    assert batch["input_ids"].shape == (2, n0)
    assert batch["attention_mask"][0].tolist() == [1] * n2 + [0] * (n0 - n2)
    assert (batch["input_ids"][0, n2:] == tokenizer.pad_token_id).all()
    assert batch["sentence_rows"].tolist() == [2, 0]
    assert batch["n_maskable"].tolist() == [n2 - 2, n0 - 2]
    k2, k0 = len(items[2]["span_rows"]), len(items[0]["span_rows"])
    assert batch["span_sentence"].tolist() == [0] * k2 + [1] * k0
    assert batch["span_morph"].shape == (k2 + k0, 4)
    assert batch["labels"].shape == (k2 + k0,) and batch["targets"].shape == (k2 + k0, 5)
    assert torch.equal(batch["span_width_bucket"], (batch["span_end"] - batch["span_start"]).clamp(max=3))
    assert batch["span_rows"].tolist() == items[2]["span_rows"].tolist() + items[0]["span_rows"].tolist()
    mlm_only = SpanCollator(tokenizer.pad_token_id)(build_items(sentences, tokenizer, 128))
    assert "span_start" not in mlm_only and mlm_only["input_ids"].shape[0] == 3


def test_sampler_buckets_by_length_and_is_deterministic():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 120, size=1000)
    sampler = LengthBucketBatchSampler(lengths, batch_size=8, shuffle=True, seed=3, pool_batches=25)
    batches = list(sampler)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000)) and len(batches) == len(sampler) == 125
    # similar lengths within a batch: far less padding than random batches
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    random_spread = np.mean([np.ptp(lengths[rng.permutation(1000)[:8]]) for _ in range(200)])
    assert spread < 0.1 * random_spread
    # the batch order is shuffled, not sorted by length overall
    means = [lengths[b].mean() for b in batches]
    assert means != sorted(means)
    # same seed and epoch -> same batches; another epoch or seed -> others
    assert list(LengthBucketBatchSampler(lengths, 8, True, seed=3, pool_batches=25)) == batches
    sampler.set_epoch(1)
    assert list(sampler) != batches
    assert list(LengthBucketBatchSampler(lengths, 8, True, seed=4, pool_batches=25)) != batches


def test_sampler_without_shuffle_sorts_and_drop_last():
    lengths = [5, 3, 9, 1, 7]
    assert list(LengthBucketBatchSampler(lengths, 2, shuffle=False)) == [[3, 1], [0, 4], [2]]
    dropped = LengthBucketBatchSampler(lengths, 2, shuffle=True, seed=0, drop_last=True)
    assert len(dropped) == 2 and all(len(b) == 2 for b in dropped)
