"""`spans.max_span_len: auto` (glode.span_limit): the limit from the source entities, carried to
each target through the backbone's pieces; target gold is never read; a span of the chosen
maximum length runs through training, labelling and evaluation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import CLASSES, ENTITY_TYPES, write_sentences


def test_smallest_covering_length_by_hand():
    from glode.span_limit import smallest_covering_length

    lengths = [1, 1, 1, 2, 2, 2, 3, 3, 5, 9]  # ten entities
    assert smallest_covering_length(lengths, 0.8) == 3  # 8 of 10 are <= 3
    assert smallest_covering_length(lengths, 0.81) == 5  # 9 of 10 needed
    assert smallest_covering_length(lengths, 0.9) == 5
    assert smallest_covering_length(lengths, 0.99) == 9
    assert smallest_covering_length(lengths, 1.0) == 9
    assert smallest_covering_length([], 0.99) == 1
    with pytest.raises(ValueError, match="coverage"):
        smallest_covering_length(lengths, 0)


def test_target_need_carries_the_limit_through_pieces_by_hand():
    from glode.span_limit import target_need

    # 8 English words at 1.5 pieces each are 12 pieces: 16 characters at 0.75 pieces each
    assert target_need(8, 1.5, 0.75) == 16
    # a language with longer words in pieces needs fewer tokens: 8 * 1.4933 / 1.7145 = 6.97
    assert target_need(8, 1.4933, 1.7145) == 7
    assert target_need(4, 1.5, 1.5) == 4  # same unit, same limit
    assert target_need(4, 1.4204, 1.3566) == 4  # 4.19: the nearest whole token (CoNLL en -> es)
    assert target_need(3, 1.5, 1.0) == 5  # 4.5: halves go up


def test_token_unit_tells_characters_from_words():
    from glode.span_limit import token_unit

    assert token_unit([list("北京是中国的首都"), ["上", "海", "10"]]) == "characters"  # 10 of 11 tokens
    assert token_unit([["Berlin", "is", "a", "city"]]) == "words"
    assert token_unit([["Berlin", "is"]], tokenisation="joined") == "characters"


def test_pieces_per_token_measures_text_as_written(tiny_backbone):
    from glode.model import load_tokenizer
    from glode.span_limit import pieces_per_token

    tokenizer = load_tokenizer(tiny_backbone)
    chars = [list("北京是中国的首都")]
    # fed character by character, each also gets a space-marker piece; written unspaced, it does not
    as_words = pieces_per_token(tokenizer, chars, "words")
    as_text = pieces_per_token(tokenizer, chars, "characters")
    assert as_text < 1 < as_words


def long_entity_sentences(n: int, seed: int) -> pd.DataFrame:
    """Sentences with entities of 1-3 words and, in every fifth, a 7-word organisation."""
    import random

    rng = random.Random(seed)
    rows = []
    for sent_id in range(n):
        if sent_id % 5 == 0:
            words = ["Bank", "of", "the", "Republic", "of", "New", "Holland"]
            tokens, tags = ["the", *words, "said"], ["O", "B-ORG", *["I-ORG"] * 6, "O"]
        else:
            name = rng.choice([["Berlin"], ["Angela", "Merkel"], ["United", "Nations", "Office"]])
            etype = rng.choice(["LOC", "PER", "ORG"])
            tokens, tags = ["in", *name, "today"], ["O", f"B-{etype}", *[f"I-{etype}"] * (len(name) - 1), "O"]
        rows.append({"sent_id": sent_id, "line": 1 + 5 * sent_id, "tokens": tokens, "tags": tags})
    return pd.DataFrame(rows)


def test_choose_span_limit_reads_no_target_tags(tiny_backbone):
    """The choice is the same whatever tags a target frame carries, or with none at all."""
    from glode.model import load_tokenizer
    from glode.span_limit import choose_span_limit

    tokenizer = load_tokenizer(tiny_backbone)
    source = long_entity_sentences(20, seed=1)  # 4 of 20 entities are 7 words long
    target = long_entity_sentences(10, seed=2)
    tokens_only = target[["sent_id", "tokens"]]
    poisoned = target.assign(tags=[["B-ORG"] * len(t) for t in target["tokens"]])  # one long entity per sentence
    choices = [choose_span_limit(source, {"xx": t}, tokenizer, coverage=0.99, cap=12, source_lang="en") for t in (tokens_only, target, poisoned)]
    assert choices[0] == choices[1] == choices[2]
    choice = choices[0]
    assert choice["source_limit"] == 7 and choice["source_entities"] == 20
    assert choice["needs"]["en"] == 7 and choice["max_span_len"] == max(choice["needs"].values())
    # 80% coverage does not reach the 7-word entities (4 of 20); the cap binds below the need
    assert choose_span_limit(source, {}, tokenizer, coverage=0.8, cap=12)["max_span_len"] == 3
    capped = choose_span_limit(source, {}, tokenizer, coverage=0.99, cap=5)
    assert capped["max_span_len"] == 5 and capped["capped"] and capped["source_coverage_at_limit"] == 0.8
    with pytest.raises(ValueError, match="no tags"):
        choose_span_limit(tokens_only, {}, tokenizer)


def test_subword_width_buckets_follow_the_authors_semi_log_buckets():
    from glode.model import subword_width_bucket

    start = torch.zeros(10, dtype=torch.long)
    end = torch.tensor([0, 1, 3, 4, 5, 7, 8, 15, 16, 40])
    # identity up to 4, then floor(log2 d) + 3: 5-7 -> 5, 8-15 -> 6, 16-31 -> 7, 32-63 -> 8
    assert subword_width_bucket(start, end, n_buckets=12).tolist() == [0, 1, 3, 4, 5, 5, 6, 6, 7, 8]
    assert subword_width_bucket(start, end, n_buckets=7).tolist() == [0, 1, 3, 4, 5, 5, 6, 6, 6, 6]
    # the paper's 4 buckets: a plain clip (the models trained so far are unchanged)
    assert subword_width_bucket(start, end, n_buckets=4).tolist() == [0, 1, 3, 3, 3, 3, 3, 3, 3, 3]


def test_spans_cli_auto_reads_the_chosen_limit_and_records_it(tiny_backbone, tmp_path):
    from glode import span_limit, spans
    from glode.io import GlodeInputError, read_parquet_metadata
    from glode.spans import read_span_settings

    write_sentences(long_entity_sentences(20, 1), tmp_path / "en.parquet", "en", "train", "source", labeled=True)
    write_sentences(long_entity_sentences(10, 2), tmp_path / "xx.parquet", "xx", "train", "target", labeled=False)
    assert span_limit.main(["--source", str(tmp_path / "en.parquet"), "--targets", f"xx={tmp_path / 'xx.parquet'}",
                            "--tokenizer", str(tiny_backbone), "--out", str(tmp_path / "limit.json")]) == 0
    choice = json.loads((tmp_path / "limit.json").read_text())
    assert choice["max_span_len"] >= 7 and set(choice["needs"]) == {"en", "xx"}
    args = ["--sentences", str(tmp_path / "en.parquet"), "--tokenizer", str(tiny_backbone), "--max-span-len", "auto",
            "--span-limit", str(tmp_path / "limit.json"), "--out", str(tmp_path / "en.spans.parquet"), "--stats-out", str(tmp_path / "en.stats.json")]
    assert spans.main(args) == 0
    stats = json.loads((tmp_path / "en.stats.json").read_text())
    assert stats["max_span_len"] == choice["max_span_len"] and stats["unreachable_too_long"] == 0
    assert read_parquet_metadata(tmp_path / "en.spans.parquet")["span_limit"]["rule"] == "auto"
    settings = read_span_settings(tmp_path / "en.spans.parquet")
    assert settings.max_span_len == choice["max_span_len"] and settings.limit_rule.startswith("auto: covers 99% of 20 source train entities")

    with pytest.raises(ValueError, match="needs --span-limit"):
        spans.main(args[:6] + args[8:])
    (tmp_path / "bad.json").write_text('{"max_span_len": "nine"}')
    with pytest.raises(GlodeInputError, match=r"bad\.json.*not a positive integer"):
        spans.main(args[:7] + [str(tmp_path / "bad.json")] + args[8:])
    with pytest.raises(SystemExit):
        spans.main(args[:5] + ["0"] + args[6:])


def test_a_span_of_the_maximum_length_runs_end_to_end(tiny_backbone, tmp_path):
    """A 7-word entity with max_span_len 7: enumerated, trained on (width embedding and subword
    buckets sized 7), labelled and decoded, and scored as reachable."""
    from glode import evaluate, pseudo_label, spans, train_source
    from glode.batching import read_spans
    from glode.model import SpanModel

    d = tmp_path
    write_sentences(long_entity_sentences(30, 1), d / "en.parquet", "en", "train", "source", labeled=True)
    write_sentences(long_entity_sentences(10, 3), d / "xx_test.parquet", "xx", "test", "target", labeled=True)
    for name in ("en", "xx_test"):
        assert spans.main(["--sentences", str(d / f"{name}.parquet"), "--tokenizer", str(tiny_backbone), "--max-span-len", "7",
                           "--out", str(d / f"{name}.spans.parquet"), "--stats-out", str(d / f"{name}.stats.json")]) == 0
    assert read_spans(d / "en.spans.parquet")["width"].max() == 7
    assert train_source.main([
        "--source-sentences", str(d / "en.parquet"), "--source-spans", str(d / "en.spans.parquet"), "--use-mlm", "false",
        "--backbone", str(tiny_backbone), "--entity-types", *ENTITY_TYPES, "--out", str(d / "model"), "--epochs", "1",
        "--batch-size", "8", "--grad-accumulation", "1", "--train-top-layers", "1", "--device", "cpu",
    ]) == 0  # fmt: skip
    model = SpanModel.from_pretrained(d / "model")
    assert model.config.max_span_len == 7 and model.config.subword_width_buckets == 7
    assert model.word_width_embedding.num_embeddings == 7 and model.subword_width_embedding.num_embeddings == 7
    assert pseudo_label.main(["--model", str(d / "model"), "--sentences", str(d / "xx_test.parquet"),
                              "--spans", str(d / "xx_test.spans.parquet"), "--out", str(d / "pred.parquet")]) == 0
    predicted = pd.read_parquet(d / "pred.parquet")
    longest = predicted[(predicted["end"] - predicted["start"] + 1) == 7]
    probs = longest[[f"p_{c}" for c in CLASSES]].to_numpy()
    assert len(longest) >= 2 and np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    assert evaluate.main(["--predictions", str(d / "pred.parquet"), "--gold", str(d / "xx_test.parquet"), "--spans", str(d / "xx_test.spans.parquet"),
                          "--spans-stats", str(d / "xx_test.stats.json"), "--out", str(d / "metrics.json")]) == 0
    unreachable = json.loads((d / "metrics.json").read_text())["unreachable"]
    assert unreachable["max_span_len"] == 7 and unreachable["total"] == 0 and unreachable["gold_entities"] == 10
