"""Pseudo-label quality against hidden gold (the analysis behind Figure 3)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from glode import label_quality
from glode.io import GlodeInputError, read_json, write_parquet

CLASSES = ["O", "PER", "LOC"]


def write_gold(path, hidden=True):
    table = pa.table(
        {
            "sent_id": pa.array([0, 3], pa.int64()),
            "tokens": pa.array([["Anna", "lives", "in", "Rom"], ["Berlin", "calls"]], pa.list_(pa.string())),
            "tags": pa.array([["B-PER", "O", "O", "B-LOC"], ["B-LOC", "O"]], pa.list_(pa.string())),
        }
    )
    write_parquet(table, path, {"hidden_gold": hidden, "labeled": True})


def write_labels(path, rows):
    frame = pd.DataFrame(rows, columns=["sent_id", "start", "end", "p_O", "p_PER", "p_LOC"])
    frame["label"] = frame[["p_O", "p_PER", "p_LOC"]].idxmax(axis=1).str[2:]
    frame["prob"] = frame[["p_O", "p_PER", "p_LOC"]].max(axis=1)
    write_parquet(frame, path, {"classes": CLASSES, "epoch": 2, "labels_changed": 5})


def test_quality_hand_computed(tmp_path):
    gold, labels, out = tmp_path / "gold.parquet", tmp_path / "labels.parquet", tmp_path / "q.json"
    write_gold(gold)
    # Anna=PER (right), Rom=PER (wrong type), "lives in"=LOC (spurious), Berlin=LOC (right)
    write_labels(
        labels,
        [
            (0, 0, 0, 0.1, 0.8, 0.1),
            (0, 3, 3, 0.3, 0.4, 0.3),
            (0, 1, 2, 0.4, 0.0, 0.6),
            (3, 0, 0, 0.2, 0.1, 0.7),
        ],
    )
    assert label_quality.main(["--labels", str(labels), "--gold", str(gold), "--out", str(out)]) == 0
    metrics = read_json(out)
    # 4 predicted, 3 gold, 2 correct: P = 1/2, R = 2/3, F1 = 2PR/(P+R) = 4/7
    assert metrics["seqeval"]["precision"] == pytest.approx(0.5)
    assert metrics["seqeval"]["recall"] == pytest.approx(2 / 3)
    assert metrics["seqeval"]["f1"] == pytest.approx(4 / 7)
    assert metrics["epoch"] == 2
    assert metrics["labels_changed"] == 5  # carried from the labels' metadata for the study tables


def test_quality_refuses_non_hidden_gold(tmp_path):
    gold, labels = tmp_path / "gold.parquet", tmp_path / "labels.parquet"
    write_gold(gold, hidden=False)
    write_labels(labels, [(0, 0, 0, 0.1, 0.8, 0.1)])
    with pytest.raises(GlodeInputError, match="not a hidden-gold file"):
        label_quality.main(["--labels", str(labels), "--gold", str(gold), "--out", str(tmp_path / "q.json")])
    assert not (tmp_path / "q.json").exists()


def test_several_epochs_in_one_call_score_each_file(tmp_path):
    """One process scores every epoch of a run (`target_jobs: run`): out i belongs to labels i."""
    gold = tmp_path / "gold.parquet"
    write_gold(gold)
    write_labels(tmp_path / "e0.parquet", [(0, 0, 0, 0.1, 0.8, 0.1)])  # Anna=PER: 1 of 3 gold, P = 1
    write_labels(tmp_path / "e1.parquet", [(0, 0, 0, 0.1, 0.8, 0.1), (3, 0, 0, 0.2, 0.1, 0.7)])  # + Berlin=LOC
    outs = [tmp_path / "q0.json", tmp_path / "q1.json"]
    assert label_quality.main(["--labels", str(tmp_path / "e0.parquet"), str(tmp_path / "e1.parquet"), "--gold", str(gold), "--out", *map(str, outs)]) == 0
    assert [read_json(o)["seqeval"]["recall"] for o in outs] == pytest.approx([1 / 3, 2 / 3])
    with pytest.raises(SystemExit):
        label_quality.main(["--labels", str(tmp_path / "e0.parquet"), str(tmp_path / "e1.parquet"), "--gold", str(gold), "--out", str(outs[0])])
