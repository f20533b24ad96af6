"""glode.evaluate: greedy span decoding, BIO conversion, seqeval scores and the CLI, on hand examples."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from glode.evaluate import (
    decode_entities,
    entities_to_bio,
    entity_type_distribution,
    score_bio,
    span_level_f1_authors,
    write_conll,
)
from glode.io import GlodeInputError, write_json, write_parquet

CLASSES = ["O", "PER", "LOC", "ORG"]


def span_probs(rows, classes=CLASSES):
    """A span-prediction table from (sent_id, start, end, argmax label, its prob) rows.

    The rest of the probability mass is spread evenly over the other classes, so the given label
    is the argmax whenever its prob exceeds 1 / len(classes).
    """
    records = []
    for sent_id, start, end, label, prob in rows:
        rest = (1.0 - prob) / (len(classes) - 1)
        record = {"sent_id": sent_id, "start": start, "end": end}
        record.update({f"p_{c}": np.float32(prob if c == label else rest) for c in classes})
        record["label"], record["prob"] = label, np.float32(prob)
        records.append(record)
    return pd.DataFrame.from_records(records)


def overlaps(a, b):
    return a[0] <= b[1] and b[0] <= a[1]


# ------------------------------------------------------------------ decoding


def test_decode_keeps_highest_probability_among_overlapping_spans():
    predictions = span_probs(
        [
            (0, 0, 1, "PER", 0.90),
            (0, 1, 2, "LOC", 0.95),  # best: kept, so (0,1) and (2,4) are out
            (0, 0, 0, "PER", 0.80),  # does not touch (1,2): kept
            (0, 3, 3, "O", 0.70),  # argmax O: never an entity
            (0, 2, 4, "LOC", 0.60),  # overlaps (1,2)
            (0, 3, 4, "PER", 0.50),  # free words 3-4: kept
        ]
    )
    decoded = decode_entities(predictions, CLASSES)
    assert [e[:3] for e in decoded[0]] == [(0, 0, "PER"), (1, 2, "LOC"), (3, 4, "PER")]
    assert decoded[0][1][3] == pytest.approx(0.95)
    assert entities_to_bio(5, decoded[0]) == ["B-PER", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_decode_breaks_probability_ties_by_start_then_end():
    predictions = span_probs([(0, 1, 2, "LOC", 0.7), (0, 0, 1, "PER", 0.7), (1, 0, 2, "ORG", 0.6), (1, 0, 1, "PER", 0.6)])
    # Rows shuffled in every order give the same answer: lower start wins, then lower end.
    for seed in range(5):
        decoded = decode_entities(predictions.sample(frac=1, random_state=seed), CLASSES)
        assert [e[:3] for e in decoded[0]] == [(0, 1, "PER")]
        assert [e[:3] for e in decoded[1]] == [(0, 1, "PER")]


def test_decode_never_returns_overlaps_and_is_greedy_on_random_tables():
    rng = np.random.default_rng(0)
    rows = []
    for sent_id in range(30):
        for start in range(8):
            for end in range(start, min(start + 4, 8)):
                label = CLASSES[rng.integers(len(CLASSES))]
                rows.append((sent_id, start, end, label, float(rng.uniform(0.3, 1.0))))
    predictions = span_probs(rows)
    decoded = decode_entities(predictions, CLASSES)
    assert set(decoded) == set(range(30))
    for sent_id, kept in decoded.items():
        for i, a in enumerate(kept):
            assert all(not overlaps(a, b) for b in kept[i + 1 :])
        # Greedy: every dropped entity span overlaps a kept one at least as probable.
        for _, start, end, label, prob in (r for r in rows if r[0] == sent_id and r[3] != "O"):
            if (start, end, label) not in {k[:3] for k in kept}:
                assert any(overlaps((start, end), k) and k[3] >= np.float32(prob) for k in kept)


def test_decode_and_bio_for_three_sentences():
    # s0: "John Smith lives in New York"   s1: "nothing here"   s2: "Acme hired Ann"
    predictions = span_probs(
        [
            (0, 0, 1, "PER", 0.90),
            (0, 1, 1, "PER", 0.60),  # inside John Smith: dropped
            (0, 1, 2, "LOC", 0.40),  # overlaps John Smith: dropped
            (0, 4, 5, "LOC", 0.80),
            (0, 3, 4, "LOC", 0.55),  # overlaps New York: dropped
            (0, 2, 2, "O", 0.99),
            (1, 0, 0, "O", 0.90),
            (1, 0, 1, "O", 0.80),
            (2, 0, 0, "ORG", 0.70),
            (2, 2, 2, "PER", 0.85),
            (2, 1, 2, "ORG", 0.50),  # overlaps Ann (0.85): dropped
        ]
    )
    decoded = decode_entities(predictions, CLASSES)
    assert set(decoded) == {0, 1, 2} and decoded[1] == []
    bio = [entities_to_bio(n, decoded[s]) for s, n in [(0, 6), (1, 2), (2, 3)]]
    assert bio == [
        ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"],
        ["O", "O"],
        ["B-ORG", "O", "B-PER"],
    ]


def _greedy_reference(rows: pd.DataFrame) -> list[tuple]:
    """One sentence decoded the slow, obvious way: every entity span, best first, kept unless a word is taken."""
    probs = rows[[f"p_{c}" for c in CLASSES]].to_numpy()
    candidates = sorted(
        (-float(p.max()), int(b), int(e), CLASSES[int(p.argmax())]) for p, b, e in zip(probs, rows["start"], rows["end"]) if p.argmax() != 0
    )
    kept, taken = [], set()
    for neg_prob, b, e, label in candidates:
        if taken.isdisjoint(range(b, e + 1)):
            taken.update(range(b, e + 1))
            kept.append((b, e, label))
    return sorted(kept)


def test_decode_500k_spans_matches_the_per_sentence_greedy():
    """A test-file-sized input (its speed is benchmarks/bench_decode.py's): every sentence decoded,
    and the vectorised ordering gives what the obvious per-sentence greedy gives."""
    from glode.testing import random_span_predictions

    n_sent = 10_000
    predictions = random_span_predictions(n_sent, 14, CLASSES)  # 50 spans of <= 4 words per sentence
    assert len(predictions) == 500_000
    decoded = decode_entities(predictions, CLASSES)
    assert len(decoded) == n_sent
    for sent_id in np.random.default_rng(1).choice(n_sent, size=100, replace=False):
        rows = predictions[predictions["sent_id"] == sent_id]
        assert [entity[:3] for entity in decoded[int(sent_id)]] == _greedy_reference(rows)


def test_entities_to_bio_rejects_overlaps_and_out_of_range():
    assert entities_to_bio(3, []) == ["O", "O", "O"]
    with pytest.raises(ValueError, match="overlaps"):
        entities_to_bio(4, [(0, 1, "PER"), (1, 2, "LOC")])
    with pytest.raises(ValueError, match="outside"):
        entities_to_bio(2, [(1, 2, "PER")])


# ------------------------------------------------------------------ scoring

# Gold for the scoring and CLI tests (max_span_len 4):
#   s0 "John Smith visited the Ministry of Foreign Affairs of France ." : PER(0,1), ORG(4,9) 6 words: no span reaches it
#   s1 "Paris is in France"                                           : LOC(0,0), LOC(3,3)
#   s2 "Anna met Bob"                                                 : PER(0,0), PER(2,2)
#   s3 "Berlin"                                                       : LOC(0,0), and no predicted span at all
TOKENS = [
    ["John", "Smith", "visited", "the", "Ministry", "of", "Foreign", "Affairs", "of", "France", "."],
    ["Paris", "is", "in", "France"],
    ["Anna", "met", "Bob"],
    ["Berlin"],
]
GOLD = [
    ["B-PER", "I-PER", "O", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG", "I-ORG", "I-ORG", "O"],
    ["B-LOC", "O", "O", "B-LOC"],
    ["B-PER", "O", "B-PER"],
    ["B-LOC"],
]
# Predicted: PER(0,1) right, ORG(6,9) wrong span; LOC(0,0) right, ORG(3,3) wrong type; PER(0,0) right, Bob missed.
PREDICTED_ENTITIES = {0: [(0, 1, "PER", 0.9), (6, 9, "ORG", 0.8)], 1: [(0, 0, "LOC", 0.9), (3, 3, "ORG", 0.7)], 2: [(0, 0, "PER", 0.8)]}
PRED = [entities_to_bio(len(t), PREDICTED_ENTITIES.get(s, [])) for s, t in enumerate(TOKENS)]


def test_score_bio_matches_hand_computation_with_unreachable_gold_as_miss():
    scores = score_bio(GOLD, PRED)
    # 7 gold entities (the 6-word ORG included), 5 predicted, 3 correct.
    precision, recall = 3 / 5, 3 / 7
    f1 = 2 * precision * recall / (precision + recall)  # = 2 * 9/35 / (36/35) = 0.5
    assert f1 == pytest.approx(0.5)
    assert scores["seqeval"]["precision"] == pytest.approx(precision)
    assert scores["seqeval"]["recall"] == pytest.approx(recall)
    assert scores["seqeval"]["f1"] == pytest.approx(f1)
    assert scores["counts"] == {"sentences": 4, "gold_entities": 7, "predicted_entities": 5, "correct": 3}
    # All predicted tags are valid IOB2, so strict agrees here.
    assert scores["seqeval_strict"]["f1"] == pytest.approx(f1)
    per_type = scores["per_type"]
    assert per_type["PER"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})  # 2 of 3, none wrong
    assert per_type["LOC"] == pytest.approx({"precision": 1.0, "recall": 1 / 3, "f1": 0.5, "support": 3})  # 1 of 3
    assert per_type["ORG"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})  # 2 predicted, 0 right
    json.dumps(scores, allow_nan=False)  # plain JSON-serialisable numbers


def test_strict_and_default_modes_differ_on_an_entity_opened_by_I():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["I-PER", "I-PER", "O", "B-LOC"]]
    scores = score_bio(gold, pred)
    # Default (lenient) mode: I-PER after O opens PER(0,1): both entities right.
    assert (scores["seqeval"]["precision"], scores["seqeval"]["recall"], scores["seqeval"]["f1"]) == pytest.approx((1.0, 1.0, 1.0))
    # Strict IOB2: the I-opened PER is no entity: P = 1/1, R = 1/2, F1 = 2 * 1 * 0.5 / 1.5 = 2/3.
    strict = scores["seqeval_strict"]
    assert (strict["precision"], strict["recall"], strict["f1"]) == pytest.approx((1.0, 0.5, 2 / 3))
    assert (strict["gold_entities"], strict["predicted_entities"], strict["correct"]) == (2, 1, 1)
    assert strict["mode"] == "strict" and strict["scheme"] == "IOB2"


def test_score_bio_with_no_entities_is_zero_not_nan():
    scores = score_bio([["O", "O"]], [["O", "O"]])
    assert scores["seqeval"]["f1"] == 0.0 and scores["counts"]["gold_entities"] == 0
    json.dumps(scores, allow_nan=False)


def test_score_bio_rejects_misaligned_sentences():
    with pytest.raises(ValueError, match="sentence 0"):
        score_bio([["O", "O"]], [["O"]])


def enumerate_spans(tokens, gold_tags, max_span_len=4):
    """The spans table of the hand example: every run of 1..max_span_len words, gold-labelled."""
    rows = []
    for sent_id, (words, tags) in enumerate(zip(tokens, gold_tags)):
        gold = {(b, e): t for t, b, e in _entities(tags)}
        for start in range(len(words)):
            for end in range(start, min(start + max_span_len, len(words))):
                rows.append({"sent_id": sent_id, "start": start, "end": end, "width": end - start + 1, "label": gold.get((start, end), "O")})
    return pd.DataFrame(rows)


def _entities(tags):
    from seqeval.metrics.sequence_labeling import get_entities

    return get_entities(list(tags))


def test_span_level_authors_leaves_unreachable_gold_out():
    spans = enumerate_spans(TOKENS, GOLD)
    scores = span_level_f1_authors(PREDICTED_ENTITIES, spans)
    # The 6-word ORG is no span: 6 gold spans, 5 predicted, 3 exact matches.
    precision, recall = 3 / 5, 3 / 6
    assert (scores["gold_entities"], scores["predicted_entities"], scores["correct"]) == (6, 5, 3)
    assert scores["precision"] == pytest.approx(precision)
    assert scores["recall"] == pytest.approx(recall)
    assert scores["f1"] == pytest.approx(2 * precision * recall / (precision + recall))  # 6/11, above seqeval's 0.5
    assert "authors" in scores["note"]


def test_entity_type_distribution():
    decoded = {0: [(0, 1, "PER", 0.9)], 1: [(0, 0, "LOC", 0.8), (2, 2, "PER", 0.7)], 2: []}
    assert entity_type_distribution(decoded) == pytest.approx({"LOC": 1 / 3, "PER": 2 / 3})
    assert entity_type_distribution([("PER", 0, 1), ("ORG", 2, 2)]) == {"ORG": 0.5, "PER": 0.5}  # bio_entities order
    assert entity_type_distribution(["LOC", "LOC", "MISC", "PER"]) == {"LOC": 0.5, "MISC": 0.25, "PER": 0.25}
    assert entity_type_distribution({}) == {}


def test_write_conll(tmp_path):
    path = tmp_path / "out" / "predictions.conll"
    write_conll(path, [["Anna", "met", "Bob"], ["Berlin"]], [["B-PER", "O", "B-PER"], ["B-LOC"]], [["B-PER", "O", "O"], ["O"]])
    assert path.read_text(encoding="utf-8") == "Anna\tB-PER\tB-PER\nmet\tO\tO\nBob\tB-PER\tO\n\nBerlin\tB-LOC\tO\n\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["predictions.conll"]  # no temporary left behind
    with pytest.raises(ValueError):
        write_conll(tmp_path / "bad.conll", [["a", "b"]], [["O"]], [["O", "O"]])
    assert not (tmp_path / "bad.conll").exists()


# ------------------------------------------------------------------ CLI


@pytest.fixture()
def split_files(tmp_path):
    """Sentences, spans, spans stats and span predictions of the hand example, as the stages write them."""
    sentences = pd.DataFrame({"sent_id": range(4), "line": [1, 13, 18, 22], "tokens": TOKENS, "tags": GOLD})
    write_parquet(sentences, tmp_path / "test.parquet", metadata={"dataset": "toy", "lang": "xx", "split": "test", "labeled": True, "entity_types": CLASSES[1:]})
    spans = enumerate_spans(TOKENS, GOLD)
    write_parquet(spans, tmp_path / "spans.parquet")
    write_json({"sentences": 4, "spans": len(spans), "gold_entities": 7, "unreachable_too_long": 1, "unreachable_truncated": 0, "max_span_len": 4}, tmp_path / "spans.stats.json")
    # Every span of s0-s2 is O (0.9) except the predicted entities and one lower-probability
    # overlapping PER(1,2) that decoding must drop; s3 has no prediction rows at all.
    chosen = {(s, e[0], e[1]): (e[2], e[3]) for s, ents in PREDICTED_ENTITIES.items() for e in ents}
    chosen[(0, 1, 2)] = ("PER", 0.6)
    rows = [(r.sent_id, r.start, r.end, *chosen.get((r.sent_id, r.start, r.end), ("O", 0.9))) for r in spans.itertuples() if r.sent_id != 3]
    predictions = span_probs(rows)
    write_parquet(predictions, tmp_path / "pred.parquet", metadata={"classes": CLASSES, "model": "toy"})
    return tmp_path


def evaluate_args(root, predictions="pred.parquet"):
    return [
        "--predictions", str(root / predictions), "--gold", str(root / "test.parquet"), "--spans", str(root / "spans.parquet"),
        "--spans-stats", str(root / "spans.stats.json"), "--out", str(root / "eval" / "metrics.json"),
        "--conll-out", str(root / "eval" / "predictions.conll"), "--log", str(root / "eval" / "evaluate.log"),
    ]  # fmt: skip


def test_cli_end_to_end(split_files):
    from glode.cli import main

    root = split_files
    assert main(["evaluate", *evaluate_args(root)]) == 0
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert metrics["seqeval"]["f1"] == pytest.approx(0.5)  # as in the hand computation above
    assert metrics["seqeval"]["recall"] == pytest.approx(3 / 7)
    assert metrics["span_level_authors"]["f1"] == pytest.approx(6 / 11)
    assert metrics["counts"]["gold_entities"] == 7 and metrics["counts"]["correct"] == 3
    assert metrics["counts"]["gold_entities_without_span"] == 1
    assert metrics["unreachable"]["unreachable_too_long"] == 1 and metrics["unreachable"]["total"] == 1
    assert set(metrics["per_type"]) == {"PER", "LOC", "ORG"}
    assert "seqeval_strict" in metrics
    assert metrics["predictions"] == str(root / "pred.parquet") and metrics["gold"] == str(root / "test.parquet")

    conll = (root / "eval" / "predictions.conll").read_text(encoding="utf-8").split("\n\n")
    assert conll[0].splitlines()[:2] == ["John\tB-PER\tB-PER", "Smith\tI-PER\tI-PER"]
    assert conll[0].splitlines()[6] == "Foreign\tI-ORG\tB-ORG"
    assert conll[3] == "Berlin\tB-LOC\tO"
    assert "seqeval F1 50.00" in (root / "eval" / "evaluate.log").read_text()


def test_cli_rejects_predictions_for_missing_sentence(split_files, project_root):
    root = split_files
    predictions = pd.read_parquet(root / "pred.parquet")
    predictions.loc[5, "sent_id"] = 99
    write_parquet(predictions, root / "bad.parquet", metadata={"classes": CLASSES})
    result = subprocess.run([sys.executable, "-m", "glode.evaluate", *evaluate_args(root, "bad.parquet")], capture_output=True, text=True, cwd=project_root)
    assert result.returncode != 0
    assert "bad.parquet" in result.stderr and "sent_id 99 does not exist" in result.stderr
    assert not (root / "eval" / "metrics.json").exists()
    assert not (root / "eval" / "predictions.conll").exists()


def test_cli_rejects_predictions_past_the_sentence_end(split_files):
    from glode.evaluate import main

    root = split_files
    predictions = pd.read_parquet(root / "pred.parquet")
    predictions.loc[0, ["sent_id", "start", "end"]] = [2, 2, 3]  # "Anna met Bob" has words 0..2
    write_parquet(predictions, root / "bad.parquet", metadata={"classes": CLASSES})
    with pytest.raises(GlodeInputError, match=r"bad\.parquet.*not inside sentence 2 of 3 words"):
        main(evaluate_args(root, "bad.parquet"))
    assert not (root / "eval" / "metrics.json").exists()


def test_cli_refuses_hidden_gold_file(split_files):
    from glode.evaluate import main

    root = split_files
    sentences = pd.read_parquet(root / "test.parquet")
    write_parquet(sentences, root / "test.parquet", metadata={"hidden_gold": True})
    with pytest.raises(GlodeInputError, match="hidden-gold"):
        main(evaluate_args(root))
    assert not (root / "eval" / "metrics.json").exists()
