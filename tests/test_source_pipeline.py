"""End to end on tiny synthetic CoNLL-like data: train-source -> pseudo-label -> evaluate.

Uses the random 2-layer `tiny_backbone`, so the scores are meaningless; what is tested is that
the stages fit together through the files of docs/data-formats.md.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import CLASSES, ENTITY_TYPES, synthetic_sentences, write_sentences, write_spans

from glode.io import read_parquet_metadata, write_parquet


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory, tiny_backbone):
    from glode.model import load_tokenizer

    root = tmp_path_factory.mktemp("synthetic")
    tokenizer = load_tokenizer(tiny_backbone)
    en_train = synthetic_sentences(48, seed=1)
    xx_train = synthetic_sentences(40, seed=2, lang_suffix="s")
    xx_test = synthetic_sentences(24, seed=3, lang_suffix="s")
    write_sentences(en_train, root / "en_train.parquet", "en", "train", "source", labeled=True)
    write_sentences(xx_train, root / "xx_train.parquet", "xx", "train", "target", labeled=False)
    write_sentences(xx_test, root / "xx_test.parquet", "xx", "test", "target", labeled=True)
    write_spans(en_train, root / "en_train.spans.parquet", tokenizer, labeled=True)
    write_spans(xx_train, root / "xx_train.spans.parquet", tokenizer, labeled=False)
    write_spans(xx_test, root / "xx_test.spans.parquet", tokenizer, labeled=True)
    return root


@pytest.fixture(scope="module")
def source_model(synthetic_data, tiny_backbone, tmp_path_factory):
    """One train-source run (1 epoch, 48 sentences, 3 updates of 2 x 8 sentences); returns (model dir, train log)."""
    from glode import train_source

    d = synthetic_data
    out = tmp_path_factory.mktemp("source")
    rc = train_source.main([
        "--source-sentences", str(d / "en_train.parquet"),
        "--source-spans", str(d / "en_train.spans.parquet"),
        "--target-sentences", str(d / "xx_train.parquet"),
        "--backbone", str(tiny_backbone),
        "--entity-types", *ENTITY_TYPES,
        "--out", str(out / "model"),
        "--train-log", str(out / "train.jsonl"),
        "--epochs", "1", "--batch-size", "8", "--grad-accumulation", "2", "--warmup-steps", "1", "--lr", "1e-3",
        "--device", "cpu",
    ])  # fmt: skip
    assert rc == 0
    return out / "model", out / "train.jsonl"


def test_train_source_outputs(source_model):
    model_dir, train_log = source_model
    assert (model_dir / "config.json").exists() and (model_dir / "model.safetensors").exists()
    assert (model_dir / "tokenizer.json").exists() and (model_dir / "glode_training.json").exists()
    assert not [p for p in model_dir.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    records = [json.loads(line) for line in train_log.read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]  # 48 sentences / 8 = 6 batches / 2 = 3 updates
    for r in records:
        assert set(r) >= {"step", "epoch", "loss_src", "loss_mlm", "loss_total", "lr", "sentences_per_s"}
        assert r["loss_total"] == pytest.approx(r["loss_src"] + 1e-3 * r["loss_mlm"], rel=1e-5)
        assert r["loss_mlm"] > 0
    # warm-up of 1 update, then linear decay to 0 over the 3 updates: lr before each update
    assert [r["lr"] for r in records] == pytest.approx([0.0, 1e-3, 5e-4])


@pytest.mark.parametrize("pruned", ["false", "true"])
def test_pseudo_label_target_train(synthetic_data, source_model, tmp_path, pruned):
    """Initial pseudo labels on the unlabeled target train split, in both forms."""
    from glode import pseudo_label

    d, (model_dir, _) = synthetic_data, source_model
    out = tmp_path / "pseudo.parquet"
    assert pseudo_label.main(["--model", str(model_dir), "--sentences", str(d / "xx_train.parquet"), "--spans", str(d / "xx_train.spans.parquet"), "--out", str(out), "--pruned", pruned, "--device", "cpu"]) == 0
    pred = pd.read_parquet(out)
    spans = pd.read_parquet(d / "xx_train.spans.parquet")
    assert list(pred.columns) == ["sent_id", "start", "end", "text", *[f"p_{c}" for c in CLASSES], "label", "prob"]
    assert len(pred) == len(spans)
    assert (pred[["sent_id", "start", "end"]].to_numpy() == spans[["sent_id", "start", "end"]].to_numpy()).all()
    probs = pred[[f"p_{c}" for c in CLASSES]].to_numpy()
    assert probs.dtype == np.float32 and pred["prob"].dtype == np.float32
    assert pred["sent_id"].dtype == np.int64 and pred["start"].dtype == np.int16 and pred["end"].dtype == np.int16
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (pred["label"].to_numpy() == np.asarray(CLASSES)[probs.argmax(axis=1)]).all()
    np.testing.assert_allclose(pred["prob"], probs.max(axis=1))
    meta = read_parquet_metadata(out)
    assert meta["classes"] == CLASSES and meta["pruned"] is (pruned == "true")
    assert meta["spans_path"] == str(d / "xx_train.spans.parquet") and meta["model"] == str(model_dir)
    sentences = pd.read_parquet(d / "xx_train.parquet")
    for _, row in pred.sample(5, random_state=0).iterrows():
        words = list(sentences["tokens"].iloc[int(row["sent_id"])])
        assert row["text"] == " ".join(words[row["start"] : row["end"] + 1])
    if pruned == "true":
        soft = probs[:, 0] < 1.0
        assert (probs[~soft, 1:] == 0).all()  # one-hot O
        assert (pred["label"][soft] != "O").all()  # survivors are entity spans ...
        kept = pred[soft]
        for _, group in kept.groupby("sent_id"):  # ... that never overlap
            covered = np.zeros(200, dtype=int)
            for b, e in zip(group["start"], group["end"]):
                covered[b : e + 1] += 1
            assert covered.max() <= 1


def test_pseudo_label_then_evaluate(synthetic_data, source_model, tmp_path):
    """Test-set predictions -> `glode evaluate` -> metrics.json."""
    from glode import evaluate, pseudo_label

    d, (model_dir, _) = synthetic_data, source_model
    test_pred = tmp_path / "test_pred.parquet"
    assert pseudo_label.main(["--model", str(model_dir), "--sentences", str(d / "xx_test.parquet"), "--spans", str(d / "xx_test.spans.parquet"), "--out", str(test_pred), "--device", "cpu", "--batch-size", "5"]) == 0
    metrics_path = tmp_path / "metrics.json"
    rc = evaluate.main(["--predictions", str(test_pred), "--gold", str(d / "xx_test.parquet"), "--spans", str(d / "xx_test.spans.parquet"), "--spans-stats", str(d / "xx_test.spans.stats.json"), "--out", str(metrics_path)])
    assert rc == 0
    metrics = json.loads(metrics_path.read_text())
    assert 0.0 <= metrics["seqeval"]["f1"] <= 1.0
    assert metrics["counts"]["gold_entities"] > 0


def test_pseudo_label_refuses_spans_of_another_window(synthetic_data, source_model, tmp_path):
    """Spans past the model's window (built with a larger max_seq_len) are an input error; nothing is written."""
    from glode import pseudo_label
    from glode.io import GlodeInputError

    from glode.batching import read_spans
    from glode.io import read_parquet_metadata

    d, (model_dir, _) = synthetic_data, source_model
    # the same rows, but metadata that says they were enumerated for a 6-subword window
    spans_path = tmp_path / "narrow.spans.parquet"
    write_parquet(read_spans(d / "xx_test.spans.parquet"), spans_path, metadata={**read_parquet_metadata(d / "xx_test.spans.parquet"), "max_seq_len": 6})
    with pytest.raises(GlodeInputError, match="outside the encoder window"):
        pseudo_label.main(["--model", str(model_dir), "--sentences", str(d / "xx_test.parquet"), "--spans", str(spans_path), "--out", str(tmp_path / "p.parquet"), "--device", "cpu"])
    assert not (tmp_path / "p.parquet").exists()


def test_pseudo_label_refuses_spans_longer_than_the_model_handles(synthetic_data, source_model, tmp_path):
    """Spans enumerated up to more words than the model was trained for: a clear error naming the file."""
    from glode import pseudo_label
    from glode.io import GlodeInputError
    from glode.model import load_tokenizer
    from glode.spans import build_span_table

    d, (model_dir, _) = synthetic_data, source_model
    sentences = pd.read_parquet(d / "xx_test.parquet")
    table, stats = build_span_table(sentences, load_tokenizer(model_dir), max_span_len=6, max_seq_len=128)
    spans_path = tmp_path / "wide.spans.parquet"
    write_parquet(table, spans_path, metadata=stats)
    with pytest.raises(GlodeInputError, match="wide.spans.parquet.*up to 6 words.*trained for 4"):
        pseudo_label.main(["--model", str(model_dir), "--sentences", str(d / "xx_test.parquet"), "--spans", str(spans_path), "--out", str(tmp_path / "p.parquet"), "--device", "cpu"])
    assert not (tmp_path / "p.parquet").exists()


def test_use_mlm_false_needs_no_target(synthetic_data, tiny_backbone, tmp_path):
    from glode import train_source

    d = synthetic_data
    train_log = tmp_path / "log.jsonl"
    rc = train_source.main([
        "--source-sentences", str(d / "en_train.parquet"), "--source-spans", str(d / "en_train.spans.parquet"),
        "--backbone", str(tiny_backbone), "--out", str(tmp_path / "m"), "--train-log", str(train_log),
        "--use-mlm", "false", "--epochs", "1", "--batch-size", "16", "--grad-accumulation", "1",
        "--max-source-sentences", "32", "--train-top-layers", "1", "--device", "cpu",
    ])  # fmt: skip
    assert rc == 0
    records = [json.loads(line) for line in train_log.read_text().splitlines()]
    assert len(records) == 2 and all(r["loss_mlm"] is None for r in records)
    summary = json.loads((tmp_path / "m" / "glode_training.json").read_text())
    assert summary["source_sentences"] == 32 and summary["target_sentences"] == 0
    assert summary["classes"] == CLASSES  # from the source file's metadata


def test_train_source_is_deterministic(synthetic_data, tiny_backbone, tmp_path):
    """Same seed, same machine -> bit-identical weights (dropout, batch order, masks all seeded)."""
    from safetensors.torch import load_file

    from glode import train_source

    d = synthetic_data

    def run(name: str, seed: int) -> bytes:
        train_source.main([
            "--source-sentences", str(d / "en_train.parquet"), "--source-spans", str(d / "en_train.spans.parquet"),
            "--target-sentences", str(d / "xx_train.parquet"), "--backbone", str(tiny_backbone), "--out", str(tmp_path / name),
            "--epochs", "1", "--batch-size", "4", "--grad-accumulation", "2", "--warmup-steps", "0", "--lr", "1e-3",
            "--max-source-sentences", "16", "--max-target-sentences", "16", "--seed", str(seed), "--device", "cpu",
        ])  # fmt: skip
        return (tmp_path / name / "model.safetensors").read_bytes()

    first, second, other = run("a", 7), run("b", 7), run("c", 8)
    assert first == second
    assert first != other
    a, c = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "c" / "model.safetensors"))
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])
