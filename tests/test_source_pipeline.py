"""End to end on tiny synthetic CoNLL-like data: train-source -> pseudo-label -> evaluate.

Uses the random 2-layer `tiny_backbone`, so the scores are meaningless; what is tested is that
the stages fit together through the files of docs/data-formats.md.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from glode.io import read_parquet_metadata, write_parquet

ENTITY_TYPES = ["PER", "LOC", "ORG", "MISC"]
CLASSES = ["O", *ENTITY_TYPES]

_NAMES = {
    "PER": [["John", "Smith"], ["Maria"], ["Angela", "Merkel"], ["Pedro", "de", "la", "Rosa"]],
    "LOC": [["Berlin"], ["New", "York"], ["Madrid"], ["Amsterdam"]],
    "ORG": [["EU"], ["Real", "Madrid"], ["United", "Nations"], ["Siemens"]],
    "MISC": [["German"], ["Dutch"], ["World", "Cup"]],
}
_FILLER = ["said", "on", "Monday", "that", "the", "visit", "to", "was", "a", "success", "in", "1996", "and", "talks", "with"]


def synthetic_sentences(n: int, seed: int, lang_suffix: str = "") -> pd.DataFrame:
    """n random sentences of filler words and 1-2 entities, with BIO tags."""
    rng = random.Random(seed)
    rows = []
    for sent_id in range(n):
        tokens, tags = [], []
        for _ in range(rng.randint(1, 2)):
            tokens += [w + lang_suffix for w in rng.sample(_FILLER, rng.randint(1, 4))]
            tags += ["O"] * (len(tokens) - len(tags))
            etype = rng.choice(ENTITY_TYPES)
            words = rng.choice(_NAMES[etype])
            tokens += words
            tags += [f"B-{etype}"] + [f"I-{etype}"] * (len(words) - 1)
        tokens.append(".")
        tags.append("O")
        rows.append({"sent_id": sent_id, "line": 1 + sent_id * 20, "tokens": tokens, "tags": tags})
    return pd.DataFrame(rows)


def write_sentences(df: pd.DataFrame, path, lang: str, split: str, role: str, labeled: bool) -> None:
    columns = {
        "sent_id": pa.array(df["sent_id"], pa.int64()),
        "line": pa.array(df["line"], pa.int64()),
        "tokens": pa.array(df["tokens"].tolist(), pa.list_(pa.string())),
    }
    if labeled:
        columns["tags"] = pa.array(df["tags"].tolist(), pa.list_(pa.string()))
    meta = dict(dataset="synthetic", lang=lang, split=split, role=role, entity_types=ENTITY_TYPES, labeled=labeled, scheme="BIO", encoding="utf-8")
    write_parquet(pa.table(columns), path, metadata=meta)


def write_spans(df: pd.DataFrame, path, tokenizer, labeled: bool) -> None:
    from glode.spans import build_span_table

    source = df if labeled else df.drop(columns=["tags"])
    table, stats = build_span_table(source, tokenizer, max_span_len=4, max_seq_len=128)
    # Without the pandas metadata: pandas 3 cannot read back the ArrowDtype names that
    # `glode spans` leaves there (reported; glode.batching.read_spans copes with both forms).
    table = pa.Table.from_pandas(table, preserve_index=False).replace_schema_metadata(None)
    write_parquet(table, path, metadata={**stats, "entity_types": ENTITY_TYPES, "labeled": labeled})
    (path.parent / (path.stem + ".stats.json")).write_text(json.dumps(stats))


@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory, tiny_backbone):
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("synthetic")
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_backbone))
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


def test_train_pseudo_label_evaluate(synthetic_data, tiny_backbone, tmp_path):
    from glode import evaluate, pseudo_label, train_source

    d = synthetic_data
    model_dir = tmp_path / "source_model"
    train_log = tmp_path / "train.jsonl"
    rc = train_source.main([
        "--source-sentences", str(d / "en_train.parquet"),
        "--source-spans", str(d / "en_train.spans.parquet"),
        "--target-sentences", str(d / "xx_train.parquet"),
        "--backbone", str(tiny_backbone),
        "--entity-types", *ENTITY_TYPES,
        "--out", str(model_dir),
        "--train-log", str(train_log),
        "--epochs", "1", "--batch-size", "8", "--grad-accumulation", "2", "--warmup-steps", "1", "--lr", "1e-3",
        "--device", "cpu",
    ])  # fmt: skip
    assert rc == 0
    assert (model_dir / "config.json").exists() and (model_dir / "model.safetensors").exists()
    assert (model_dir / "tokenizer.json").exists() or (model_dir / "tokenizer_config.json").exists()
    records = [json.loads(line) for line in train_log.read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]  # 48 sentences / 8 = 6 batches / 2 = 3 updates
    for r in records:
        assert set(r) >= {"step", "epoch", "loss_src", "loss_mlm", "loss_total", "lr", "sentences_per_s"}
        assert r["loss_total"] == pytest.approx(r["loss_src"] + 1e-3 * r["loss_mlm"], rel=1e-5)
        assert r["loss_mlm"] > 0

    # initial pseudo labels on the unlabeled target train split, both forms
    for pruned in ("false", "true"):
        out = tmp_path / f"pseudo_{pruned}.parquet"
        assert pseudo_label.main(["--model", str(model_dir), "--sentences", str(d / "xx_train.parquet"), "--spans", str(d / "xx_train.spans.parquet"), "--out", str(out), "--pruned", pruned, "--device", "cpu"]) == 0
        pred = pd.read_parquet(out)
        spans = pd.read_parquet(d / "xx_train.spans.parquet")
        assert list(pred.columns) == ["sent_id", "start", "end", "text", *[f"p_{c}" for c in CLASSES], "label", "prob"]
        assert len(pred) == len(spans)
        assert (pred[["sent_id", "start", "end"]].to_numpy() == spans[["sent_id", "start", "end"]].to_numpy()).all()
        probs = pred[[f"p_{c}" for c in CLASSES]].to_numpy()
        assert probs.dtype == np.float32 and pred["prob"].dtype == np.float32
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        assert (pred["label"].to_numpy() == np.asarray(CLASSES)[probs.argmax(axis=1)]).all()
        meta = read_parquet_metadata(out)
        assert meta["classes"] == CLASSES and meta["pruned"] is (pruned == "true")
        assert meta["spans_path"] == str(d / "xx_train.spans.parquet") and meta["model"] == str(model_dir)
        sentences = pd.read_parquet(d / "xx_train.parquet")
        first = pred.iloc[1]
        assert first["text"] == " ".join(list(sentences["tokens"].iloc[int(first["sent_id"])])[first["start"] : first["end"] + 1])
        if pruned == "true":
            soft = probs[:, 0] < 1.0
            assert (probs[~soft, 1:] == 0).all()
            assert (pred["label"][soft] != "O").all()

    # test-set predictions -> metrics.json
    test_pred = tmp_path / "test_pred.parquet"
    assert pseudo_label.main(["--model", str(model_dir), "--sentences", str(d / "xx_test.parquet"), "--spans", str(d / "xx_test.spans.parquet"), "--out", str(test_pred), "--device", "cpu"]) == 0
    metrics_path = tmp_path / "metrics.json"
    rc = evaluate.main(["--predictions", str(test_pred), "--gold", str(d / "xx_test.parquet"), "--spans", str(d / "xx_test.spans.parquet"), "--spans-stats", str(d / "xx_test.spans.stats.json"), "--out", str(metrics_path)])
    assert rc == 0
    metrics = json.loads(metrics_path.read_text())
    assert 0.0 <= metrics["seqeval"]["f1"] <= 1.0
    assert metrics["counts"]["gold_entities"] > 0


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


def test_pseudo_label_refuses_spans_of_another_window(synthetic_data, tiny_backbone, tmp_path):
    """Spans past the model's window (e.g. built with a larger max_seq_len) are an input error."""
    from glode import pseudo_label, train_source
    from glode.io import GlodeInputError

    d = synthetic_data
    model_dir = tmp_path / "m"
    train_source.main([
        "--source-sentences", str(d / "en_train.parquet"), "--source-spans", str(d / "en_train.spans.parquet"),
        "--backbone", str(tiny_backbone), "--out", str(model_dir), "--use-mlm", "false", "--epochs", "1",
        "--max-source-sentences", "8", "--device", "cpu",
    ])  # fmt: skip
    with pytest.raises(GlodeInputError, match="outside the encoder window"):
        pseudo_label.main(["--model", str(model_dir), "--sentences", str(d / "xx_test.parquet"), "--spans", str(d / "xx_test.spans.parquet"), "--out", str(tmp_path / "p.parquet"), "--max-seq-len", "6", "--device", "cpu"])
    assert not (tmp_path / "p.parquet").exists()
