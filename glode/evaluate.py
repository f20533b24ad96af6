"""Decode span predictions into entities and score them (`glode evaluate`).

The model scores every candidate span; the paper's number is entity-level micro-F1. We decode
the way an honest reimplementation should (docs/reference-notes.md, "Evaluation"):

1. keep the spans whose most probable class is not `O`;
2. per sentence, take them by probability, highest first, and keep a span only if it overlaps
   no span already kept (greedy, so the result never contains two overlapping entities);
3. write the kept spans as word-level BIO tags and score them with seqeval against the *full*
   gold file: a gold entity that no candidate span can reach (longer than `max_span_len`, or
   past the subword window) is simply a miss.

For comparability we also report the authors' span-level measure (`span_level_authors`), which
matches decoded spans exactly against the gold spans of the spans table and so leaves the
unreachable gold entities out of the denominator (slightly flattering).

A word-level tagger's predictions (`glode predict-tokencls`: one row per sentence, `sent_id` and
`tags`) skip steps 1-2: their tags go to the same seqeval call against the same full gold file,
and their entities to the same span-level measure.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from glode.data import load_sentences
from glode.io import GlodeInputError, atomic_path, read_json, read_parquet_metadata, setup_logging, write_json

log = logging.getLogger(__name__)

Entity = tuple[int, int, str, float]  # (start, end inclusive, label, probability)


# --------------------------------------------------------------------------------------------
# decoding


def _argmax_labels(predictions: pd.DataFrame, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per row, (index into `classes` of the most probable class, its probability).

    Uses the `p_<class>` columns when all are there (ties go to the earlier class, so to `O`);
    otherwise falls back on the `label`/`prob` columns.
    """
    prob_columns = [f"p_{c}" for c in classes]
    if all(col in predictions.columns for col in prob_columns):
        probs = predictions[prob_columns].to_numpy(dtype=np.float64)
        best = probs.argmax(axis=1)
        return best, probs[np.arange(len(best)), best]
    if {"label", "prob"} <= set(predictions.columns):
        index = {c: i for i, c in enumerate(classes)}
        labels = predictions["label"].astype(str)
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise ValueError(f"labels {unknown} are not among the classes {list(classes)}")
        best = labels.map(index).to_numpy(dtype=np.int64)
        return best, predictions["prob"].to_numpy(dtype=np.float64)
    raise ValueError(f"predictions need the columns {prob_columns} (or `label` and `prob`)")


def decode_entities(predictions: pd.DataFrame, classes: Sequence[str]) -> dict[int, list[Entity]]:
    """Non-overlapping entities per sentence, by greedy highest-probability-first selection.

    `predictions` has one row per span (`sent_id`, `start`, `end`, and `p_<class>` columns, or
    `label`/`prob`); `classes` is the class order, `O` first. Spans whose argmax is `O` are
    dropped; the others are visited per sentence by probability, highest first (ties: lower
    `start`, then lower `end`, first), and a span is kept only if none of its words is already
    covered by a kept span.

    Returns {sent_id: [(start, end, label, prob), ...] sorted by start} with an entry (possibly
    empty) for every sentence that appears in `predictions`.
    """
    classes = list(classes)
    if not classes or classes[0] != "O":
        raise ValueError(f"classes must start with 'O', got {classes}")
    sent_ids = predictions["sent_id"].to_numpy(dtype=np.int64)
    decoded: dict[int, list[Entity]] = {int(s): [] for s in np.unique(sent_ids)}
    best, prob = _argmax_labels(predictions, classes)

    # Vectorised part: filter to entity spans and order them (sentence, -prob, start, end).
    keep = best != 0
    sent = sent_ids[keep]
    start = predictions["start"].to_numpy(dtype=np.int64)[keep]
    end = predictions["end"].to_numpy(dtype=np.int64)[keep]
    best, prob = best[keep], prob[keep]
    order = np.lexsort((end, start, -prob, sent))  # last key is the primary one

    # Sequential part: the greedy choice depends on what was kept before, per sentence.
    covered: set[int] = set()
    current = None
    for s, b, e, c, p in zip(sent[order].tolist(), start[order].tolist(), end[order].tolist(), best[order].tolist(), prob[order].tolist()):
        if s != current:
            current, covered = s, set()
        words = range(b, e + 1)
        if any(w in covered for w in words):
            continue
        covered.update(words)
        decoded[s].append((b, e, classes[c], p))
    for entities in decoded.values():
        entities.sort()
    return decoded


def entities_to_bio(n_words: int, entities: Iterable[Sequence[Any]]) -> list[str]:
    """Word-level BIO tags (B-X, I-X, O) of non-overlapping (start, end, label, ...) entities."""
    tags = ["O"] * n_words
    for entity in entities:
        start, end, label = int(entity[0]), int(entity[1]), str(entity[2])
        if not 0 <= start <= end < n_words:
            raise ValueError(f"entity {tuple(entity)} is outside a sentence of {n_words} words")
        if any(t != "O" for t in tags[start : end + 1]):
            raise ValueError(f"entity {tuple(entity)} overlaps another entity")
        tags[start] = f"B-{label}"
        tags[start + 1 : end + 1] = [f"I-{label}"] * (end - start)
    return tags


# --------------------------------------------------------------------------------------------
# scoring


def _prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers, NaN -> None, so that the result is valid JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def score_bio(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity-level scores of predicted BIO tags against gold BIO tags, with seqeval.

    Returns the sections of metrics.json: `seqeval` (micro P/R/F1, default = lenient mode, where
    a stray I-X opens an entity), `seqeval_strict` (mode="strict", scheme=IOB2), `per_type`
    (classification_report, default mode) and `counts` (gold / predicted / correct entities,
    default mode). Every gold sentence must have a predicted tag sequence of the same length.
    """
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
    from seqeval.metrics.sequence_labeling import get_entities
    from seqeval.scheme import IOB2, Entities

    gold = [[str(t) for t in seq] for seq in gold]
    pred = [[str(t) for t in seq] for seq in pred]
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted ones")
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted ones")

    # Sets of (sentence, type, start, end): the counts behind the micro scores.
    gold_default = {(i, *e) for i, seq in enumerate(gold) for e in get_entities(seq)}
    pred_default = {(i, *e) for i, seq in enumerate(pred) for e in get_entities(seq)}
    gold_strict = {e.to_tuple() for sent in Entities(gold, IOB2).entities for e in sent}
    pred_strict = {e.to_tuple() for sent in Entities(pred, IOB2).entities for e in sent}

    def section(mode: str | None, gold_set: set, pred_set: set) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"mode": "strict", "scheme": IOB2} if mode else {}
        result = {
            "precision": precision_score(gold, pred, zero_division=0, **kwargs),
            "recall": recall_score(gold, pred, zero_division=0, **kwargs),
            "f1": f1_score(gold, pred, zero_division=0, **kwargs),
            "mode": mode or "default",
            "gold_entities": len(gold_set),
            "predicted_entities": len(pred_set),
            "correct": len(gold_set & pred_set),
        }
        if mode:
            result["scheme"] = "IOB2"
        return _plain(result)

    with warnings.catch_warnings():  # macro averages over zero types warn "mean of empty slice"
        warnings.simplefilter("ignore", RuntimeWarning)
        report = classification_report(gold, pred, output_dict=True, zero_division=0)
    per_type = {
        label: {"precision": s["precision"], "recall": s["recall"], "f1": s["f1-score"], "support": s["support"]}
        for label, s in report.items()
        if not label.endswith(" avg")
    }
    default = section(None, gold_default, pred_default)
    default["macro_f1"] = report["macro avg"]["f1-score"]
    return {
        "seqeval": _plain(default),
        "seqeval_strict": section("strict", gold_strict, pred_strict),
        "per_type": _plain(per_type),
        "counts": {
            "sentences": len(gold),
            "gold_entities": len(gold_default),
            "predicted_entities": len(pred_default),
            "correct": len(gold_default & pred_default),
        },
    }


def span_level_f1_authors(predicted_entities: Mapping[int, Iterable[Sequence[Any]]], spans: pd.DataFrame) -> dict[str, Any]:
    """The authors' span-level measure, reported for comparability only.

    Exact (sent_id, start, end, label) matches of the decoded entities against the gold entity
    spans present in the spans table (rows whose `label` is not `O`). Gold entities that no
    candidate span reaches are not in that table, so, unlike seqeval above, they are left out of
    the denominator. (The authors' decoder can also keep overlapping spans; ours cannot.)
    """
    labels = spans["label"]
    if labels.isna().any():
        raise ValueError("the spans table has null labels (unlabeled split): no gold to score against")
    gold_rows = spans.loc[labels != "O", ["sent_id", "start", "end", "label"]]
    gold = set(zip(gold_rows["sent_id"].astype(int), gold_rows["start"].astype(int), gold_rows["end"].astype(int), gold_rows["label"].astype(str)))
    pred = {(int(s), int(e[0]), int(e[1]), str(e[2])) for s, ents in predicted_entities.items() for e in ents}
    correct = len(gold & pred)
    return {
        **_prf(correct, len(pred), len(gold)),
        "gold_entities": len(gold),
        "predicted_entities": len(pred),
        "correct": correct,
        "note": "authors' span-level measure: exact span matches against gold spans of the spans table; "
        "gold entities no span can reach are left out of the denominator (not the paper-comparable seqeval score)",
    }


def entity_type_distribution(entities: Any) -> dict[str, float]:
    """Fraction of entities of each type (the paper's Figure 4), sorted by type.

    Accepts decode_entities' {sent_id: [(start, end, label, prob), ...]}, a flat iterable of
    entity tuples in either field order ((start, end, label, ...) or bio_entities' (type, start,
    end)): the type is the tuple's first string), or plain type strings.
    """
    items = (e for ents in entities.values() for e in ents) if isinstance(entities, Mapping) else entities
    counts: Counter[str] = Counter()
    for item in items:
        if isinstance(item, str):
            counts[item] += 1
            continue
        label = next((x for x in item if isinstance(x, str)), None)
        if label is None:
            raise ValueError(f"entity {item!r} has no type (no string field)")
        counts[label] += 1
    total = sum(counts.values())
    return {label: counts[label] / total for label in sorted(counts)}


def write_conll(path: os.PathLike | str, sentences: Sequence[Sequence[str]], gold_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> None:
    """word<TAB>gold<TAB>pred per line, a blank line after each sentence; written atomically."""
    if not len(sentences) == len(gold_tags) == len(pred_tags):
        raise ValueError(f"{len(sentences)} sentences, {len(gold_tags)} gold and {len(pred_tags)} predicted tag sequences")
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for i, (words, gold, pred) in enumerate(zip(sentences, gold_tags, pred_tags)):
            if not len(words) == len(gold) == len(pred):
                raise ValueError(f"sentence {i}: {len(words)} words, {len(gold)} gold and {len(pred)} predicted tags")
            for word, g, p in zip(words, gold, pred):
                out.write(f"{word}\t{g}\t{p}\n")
            out.write("\n")


# --------------------------------------------------------------------------------------------
# input checks and CLI


def load_gold_sentences(path: os.PathLike | str) -> pd.DataFrame:
    """The labeled sentences of `path` (sent_id, line, tokens, tags); never a hidden-gold file."""
    sentences = load_sentences(path)
    if "tags" not in sentences.columns:
        raise GlodeInputError(path, "no `tags` column: cannot evaluate against an unlabeled file")
    return sentences


def prediction_classes(predictions: pd.DataFrame, path: os.PathLike | str) -> list[str]:
    """The class order: the file's `classes` metadata, else its p_* columns in order."""
    classes = read_parquet_metadata(path).get("classes") or [c[2:] for c in predictions.columns if c.startswith("p_")]
    if not classes or classes[0] != "O":
        raise GlodeInputError(path, f"class order must start with 'O', got {classes} (metadata `classes` or p_* columns)")
    missing = [f"p_{c}" for c in classes if f"p_{c}" not in predictions.columns]
    if missing and not {"label", "prob"} <= set(predictions.columns):
        raise GlodeInputError(path, f"missing probability columns {missing}")
    return list(classes)


def word_level_tags(predictions: pd.DataFrame, sentences: pd.DataFrame, path: os.PathLike | str, gold_path: os.PathLike | str) -> list[list[str]]:
    """The predicted tags of every gold sentence from a one-row-per-sentence `sent_id, tags`
    table; a missing sentence or a length that differs from the gold sentence's is an error."""
    if "sent_id" not in predictions.columns:
        raise GlodeInputError(path, "word-level predictions need a `sent_id` column")
    by_id = dict(zip(predictions["sent_id"].astype(int), predictions["tags"]))
    if len(by_id) != len(predictions):
        raise GlodeInputError(path, "a sent_id appears more than once")
    tags = []
    for sent_id, words in zip(sentences["sent_id"].astype(int), sentences["tokens"]):
        if sent_id not in by_id:
            raise GlodeInputError(path, f"no tags for sentence {sent_id} of {gold_path}")
        row = [str(t) for t in by_id[sent_id]]
        if len(row) != len(words):
            raise GlodeInputError(path, f"sentence {sent_id}: {len(row)} tags for {len(words)} words of {gold_path}")
        tags.append(row)
    extra = set(by_id) - set(sentences["sent_id"].astype(int))
    if extra:
        raise GlodeInputError(path, f"{len(extra)} sentences are not in {gold_path} (e.g. sent_id {min(extra)})")
    return tags


def prediction_classes_of_tags(predictions: pd.DataFrame, path: os.PathLike | str) -> list[str]:
    """O and the entity types of word-level predictions (the file's `classes` metadata, else its tags)."""
    classes = read_parquet_metadata(path).get("classes")
    if classes:
        return list(classes)
    types = sorted({t[2:] for tags in predictions["tags"] for t in tags if t != "O"})
    return ["O", *types]


def check_spans_against_sentences(table: pd.DataFrame, sentences: pd.DataFrame, path: os.PathLike | str, gold_path: os.PathLike | str) -> None:
    """Every row's (sent_id, start, end) must name words of a sentence of the gold file."""
    missing = [c for c in ("sent_id", "start", "end") if c not in table.columns]
    if missing:
        raise GlodeInputError(path, f"missing columns {missing}")
    n_words = pd.Series(sentences["tokens"].map(len).to_numpy(), index=sentences["sent_id"].to_numpy())
    sent_ids = table["sent_id"].to_numpy(dtype=np.int64)
    lengths = n_words.reindex(sent_ids).to_numpy()
    unknown = np.flatnonzero(np.isnan(lengths.astype(np.float64)))
    if len(unknown):
        row = int(unknown[0])
        raise GlodeInputError(path, f"row {row}: sent_id {sent_ids[row]} does not exist in {gold_path} ({len(n_words)} sentences); {len(unknown)} such rows")
    start = table["start"].to_numpy(dtype=np.int64)
    end = table["end"].to_numpy(dtype=np.int64)
    bad = np.flatnonzero((start < 0) | (end < start) | (end >= lengths))
    if len(bad):
        row = int(bad[0])
        raise GlodeInputError(path, f"row {row}: span ({start[row]}, {end[row]}) is not inside sentence {sent_ids[row]} of {int(lengths[row])} words in {gold_path}; {len(bad)} such rows")
    duplicated = np.flatnonzero(table.duplicated(["sent_id", "start", "end"]).to_numpy())
    if len(duplicated):
        row = int(duplicated[0])
        raise GlodeInputError(path, f"row {row}: span ({sent_ids[row]}, {start[row]}, {end[row]}) appears more than once")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glode evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", required=True, type=Path, help="span predictions parquet (one row per span), or a word-level tagger's (one row per sentence: sent_id, tags)")
    parser.add_argument("--gold", required=True, type=Path, help="sentences parquet of the same split, with tags")
    parser.add_argument("--spans", required=True, type=Path, help="spans parquet of the same split (for the authors' span-level score)")
    parser.add_argument("--spans-stats", type=Path, help="the spans' stats json, to report unreachable gold entities")
    parser.add_argument("--out", required=True, type=Path, help="metrics.json to write")
    parser.add_argument("--conll-out", type=Path, help="word<TAB>gold<TAB>pred file to write")
    parser.add_argument("--log", type=Path, help="also log to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    # seqeval is imported where it is used: it brings scikit-learn (~2 s), which decoding (glode.tagger) never needs
    from seqeval.metrics.sequence_labeling import get_entities

    args = build_parser().parse_args(argv)
    setup_logging(args.log)

    sentences = load_gold_sentences(args.gold)
    predictions = pd.read_parquet(args.predictions)
    spans = pd.read_parquet(args.spans, columns=["sent_id", "start", "end", "label"])
    check_spans_against_sentences(spans, sentences, args.spans, args.gold)
    if spans["label"].isna().any():
        raise GlodeInputError(args.spans, "null gold labels (unlabeled split): cannot compute the span-level score")
    tokens = [list(t) for t in sentences["tokens"]]
    gold_tags = [list(t) for t in sentences["tags"]]

    if "tags" in predictions.columns:  # a word-level tagger's BIO tags (glode predict-tokencls)
        pred_tags = word_level_tags(predictions, sentences, args.predictions, args.gold)
        classes = prediction_classes_of_tags(predictions, args.predictions)
        decoded = {int(s): [(b, e, t, float("nan")) for t, b, e in get_entities(tags)] for s, tags in zip(sentences["sent_id"], pred_tags) if any(t != "O" for t in tags)}
    else:
        classes = prediction_classes(predictions, args.predictions)
        check_spans_against_sentences(predictions, sentences, args.predictions, args.gold)
        decoded = decode_entities(predictions, classes)
        pred_tags = [entities_to_bio(len(words), decoded.get(int(s), [])) for s, words in zip(sentences["sent_id"], tokens)]

    metrics: dict[str, Any] = score_bio(gold_tags, pred_tags)
    metrics["counts"]["sentences_with_predictions"] = len(decoded)
    metrics["span_level_authors"] = span_level_f1_authors(decoded, spans)
    # Gold entities that are not a candidate span: misses for seqeval, absent for the authors.
    span_gold = spans.loc[spans["label"] != "O"]
    span_gold = set(zip(span_gold["sent_id"].astype(int), span_gold["start"].astype(int), span_gold["end"].astype(int), span_gold["label"].astype(str)))
    gold_entities = {(int(s), b, e, t) for s, tags in zip(sentences["sent_id"], gold_tags) for t, b, e in get_entities(tags)}
    metrics["counts"]["gold_entities_without_span"] = len(gold_entities - span_gold)
    metrics["unreachable"] = None
    if args.spans_stats:
        stats = read_json(args.spans_stats)
        keys = ("gold_entities", "unreachable_too_long", "unreachable_truncated", "max_span_len", "max_seq_len", "truncated_sentences")
        metrics["unreachable"] = {k: stats.get(k) for k in keys}
        metrics["unreachable"]["total"] = (stats.get("unreachable_too_long") or 0) + (stats.get("unreachable_truncated") or 0)
    metrics["classes"] = classes
    metrics["predicted_type_distribution"] = entity_type_distribution(decoded)
    metrics["predictions"] = str(args.predictions)
    metrics["gold"] = str(args.gold)
    metrics["spans"] = str(args.spans)

    if args.conll_out:
        write_conll(args.conll_out, tokens, gold_tags, pred_tags)
    write_json(metrics, args.out)  # last: its presence means the evaluation finished
    s, st, a = metrics["seqeval"], metrics["seqeval_strict"], metrics["span_level_authors"]
    log.info(
        "%s: seqeval F1 %.2f (P %.2f R %.2f; strict F1 %.2f) | authors' span-level F1 %.2f | %d gold entities, %d unreachable",
        args.predictions, 100 * s["f1"], 100 * s["precision"], 100 * s["recall"], 100 * st["f1"], 100 * a["f1"],
        metrics["counts"]["gold_entities"], metrics["counts"]["gold_entities_without_span"],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
