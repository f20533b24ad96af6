"""The token-classification baseline (`source-tokencls`): train on tiny synthetic data with the
random `tiny_backbone`, predict, and score with `glode evaluate`. The scores are meaningless;
what is tested is the stage's contract: labels on first subwords, the span model's freezing,
valid BIO out, the evaluate path, determinism."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ENTITY_TYPES, synthetic_sentences, write_sentences, write_spans

from glode.cli import main as glode_main
from glode.tokencls import IGNORE_INDEX, bio_labels, repair_bio, word_items

TRAIN_FLAGS = ["--epochs", "2", "--batch-size", "8", "--grad-accumulation", "1", "--lr", "1e-3", "--head-lr", "1e-2",
               "--warmup-steps", "0", "--encoder-layers", "2", "--train-top-layers", "1", "--use-mlm", "false", "--seed", "3"]


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_backbone):
    from glode.model import load_tokenizer

    root = tmp_path_factory.mktemp("tokencls")
    tokenizer = load_tokenizer(tiny_backbone)
    write_sentences(synthetic_sentences(48, seed=1), root / "en_train.parquet", "en", "train", "source", labeled=True)
    test = synthetic_sentences(24, seed=3, lang_suffix="s")
    write_sentences(test, root / "xx_test.parquet", "xx", "test", "target", labeled=True)
    write_spans(test, root / "xx_test.spans.parquet", tokenizer, labeled=True)
    return root


@pytest.fixture(scope="module")
def trained(data, tiny_backbone):
    model = data / "model"
    rc = glode_main(["train-tokencls", "--source-sentences", str(data / "en_train.parquet"), "--backbone", str(tiny_backbone),
                     "--out", str(model), "--train-log", str(data / "train_log.jsonl"), *TRAIN_FLAGS])
    assert rc == 0
    return model


def test_bio_labels_and_repair():
    assert bio_labels(["PER", "LOC"]) == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    assert repair_bio(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "I-PER", "B-ORG"]) == [
        "B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "B-PER", "B-ORG"]
    assert repair_bio([]) == []


def test_labels_sit_on_first_subwords_only(tiny_backbone):
    from glode.model import load_tokenizer

    tokenizer = load_tokenizer(tiny_backbone)
    sentences = pd.DataFrame({"sent_id": [7], "line": [1], "tokens": [["Schwarzenegger", "visited", "Berlin"]], "tags": [["B-PER", "O", "B-LOC"]]})
    labels = bio_labels(ENTITY_TYPES)
    (item,) = word_items(sentences, tokenizer, 128, {l: i for i, l in enumerate(labels)})
    first = item["word_first"]
    assert list(first) == sorted(first) and first[0] == 1  # <s> sits at 0
    assert (item["labels"] != IGNORE_INDEX).sum() == 3
    assert [labels[item["labels"][f]] for f in first] == ["B-PER", "O", "B-LOC"]
    # a word cut off by the window is unlabeled, and reported as such (-1)
    (short,) = word_items(sentences, tokenizer, 4, {l: i for i, l in enumerate(labels)})
    assert short["word_first"][-1] == -1 and len(short["input_ids"]) <= 4


def test_unknown_tag_names_the_file(tiny_backbone):
    from glode.io import GlodeInputError
    from glode.model import load_tokenizer

    sentences = pd.DataFrame({"sent_id": [0], "line": [1], "tokens": [["a"]], "tags": [["B-FOO"]]})
    with pytest.raises(GlodeInputError, match="train.parquet.*B-FOO"):
        word_items(sentences, load_tokenizer(tiny_backbone), 128, {"O": 0}, "train.parquet")


def test_training_freezes_as_the_span_model_and_logs(trained, data):
    from transformers import AutoModelForTokenClassification

    summary = json.loads((trained / "glode_training.json").read_text())
    assert summary["system"] == "source-tokencls" and summary["labels"] == bio_labels(ENTITY_TYPES)
    assert summary["options"]["encoder_layers"] == 2 and summary["source_sentences"] == 48
    log = [json.loads(line) for line in (data / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == summary["updates"] == 2 * 6 and all(np.isfinite(r["loss"]) for r in log)
    model = AutoModelForTokenClassification.from_pretrained(str(trained))
    assert model.config.num_hidden_layers == 2 and model.config.classifier_dropout == 0.2


def test_freezing_matches_the_span_model(tiny_backbone):
    from glode.model import SpanModel
    from glode.tokencls import build_token_classifier
    from glode.train_source import SourceTrainingOptions

    opts = SourceTrainingOptions(encoder_layers=2, train_top_layers=1, use_mlm=False)
    tokcls = build_token_classifier(str(tiny_backbone), bio_labels(ENTITY_TYPES), opts)
    span = SpanModel.from_backbone(str(tiny_backbone), ["O", *ENTITY_TYPES], encoder_layers=2)
    span.freeze_encoder_parts(False, 1)
    trains = lambda module: {n for n, p in module.named_parameters() if p.requires_grad}  # noqa: E731
    assert trains(tokcls.base_model) == trains(span.encoder) != set()
    assert all(p.requires_grad for p in tokcls.classifier.parameters())


def test_predict_then_evaluate(trained, data, tmp_path):
    pred = tmp_path / "test.parquet"
    assert glode_main(["predict-tokencls", "--model", str(trained), "--sentences", str(data / "xx_test.parquet"), "--out", str(pred), "--batch-size", "5"]) == 0
    frame = pd.read_parquet(pred)
    gold = pd.read_parquet(data / "xx_test.parquet")
    assert list(frame["sent_id"]) == list(gold["sent_id"])
    assert [len(t) for t in frame["tags"]] == [len(t) for t in gold["tokens"]]
    for tags in frame["tags"]:
        assert list(tags) == repair_bio(list(tags))
    metrics_path = tmp_path / "metrics.json"
    assert glode_main(["evaluate", "--predictions", str(pred), "--gold", str(data / "xx_test.parquet"), "--spans", str(data / "xx_test.spans.parquet"),
                       "--out", str(metrics_path), "--conll-out", str(tmp_path / "p.conll")]) == 0
    metrics = json.loads(metrics_path.read_text())
    from glode.evaluate import score_bio

    expected = score_bio([list(t) for t in gold["tags"]], [list(t) for t in frame["tags"]])
    assert metrics["seqeval"] == expected["seqeval"] and metrics["counts"]["sentences"] == 24
    assert metrics["classes"] == ["O", *ENTITY_TYPES]


def test_evaluate_refuses_word_predictions_of_another_file(trained, data, tmp_path):
    pred = tmp_path / "test.parquet"
    from glode.io import write_parquet

    write_parquet(pd.DataFrame({"sent_id": [0], "tags": [["O", "O"]]}), pred)
    rc = glode_main(["evaluate", "--predictions", str(pred), "--gold", str(data / "xx_test.parquet"), "--spans", str(data / "xx_test.spans.parquet"), "--out", str(tmp_path / "m.json")])
    assert rc == 1 and not (tmp_path / "m.json").exists()


def test_same_seed_same_model(trained, data, tiny_backbone, tmp_path):
    again = tmp_path / "again"
    assert glode_main(["train-tokencls", "--source-sentences", str(data / "en_train.parquet"), "--backbone", str(tiny_backbone), "--out", str(again), *TRAIN_FLAGS]) == 0
    from safetensors.torch import load_file

    first, second = load_file(trained / "model.safetensors"), load_file(again / "model.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_use_mlm_true_is_refused(data, tiny_backbone, tmp_path):
    flags = [f if f != "false" else "true" for f in TRAIN_FLAGS]
    assert glode_main(["train-tokencls", "--source-sentences", str(data / "en_train.parquet"), "--backbone", str(tiny_backbone), "--out", str(tmp_path / "m"), *flags]) == 1
    assert not (tmp_path / "m").exists()
