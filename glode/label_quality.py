"""Pseudo-label quality against the hidden gold (`glode label-quality`): analysis only.

The paper's Figure 3 plots, per target epoch, the entity-level F1 of the current pseudo labels
of the target train split. Those labels are scored here, against the tags that `glode prepare`
moved to the hidden-gold tree. This is the only stage that reads that tree; training stages take
their target sentences through `glode.data.load_sentences`, which refuses it.

Pseudo labels are decoded exactly as test predictions are (`glode.evaluate.decode_entities`:
non-overlapping entities, most probable first) and scored with seqeval on every gold entity
of the (sampled) train sentences.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from glode.data import load_hidden_gold
from glode.evaluate import check_spans_against_sentences, decode_entities, entities_to_bio, entity_type_distribution, prediction_classes, score_bio
from glode.io import GlodeInputError, read_parquet_metadata, setup_logging, write_json

log = logging.getLogger(__name__)


def pseudo_label_quality(labels: pd.DataFrame, classes: list[str], gold: pd.DataFrame) -> dict:
    """seqeval scores of the decoded pseudo labels against hidden gold sentences."""
    decoded = decode_entities(labels, classes)
    gold_tags = [list(t) for t in gold["tags"]]
    pred_tags = [entities_to_bio(len(tokens), decoded.get(int(s), [])) for s, tokens in zip(gold["sent_id"], gold["tokens"])]
    metrics = score_bio(gold_tags, pred_tags)
    metrics["predicted_type_distribution"] = entity_type_distribution(decoded)
    return metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glode label-quality", description=__doc__.splitlines()[0])
    parser.add_argument("--labels", required=True, type=Path, help="pseudo labels Parquet (initial or an epoch's)")
    parser.add_argument("--gold", required=True, type=Path, help="hidden gold Parquet of the target train split")
    parser.add_argument("--out", required=True, type=Path, help="quality JSON to write")
    parser.add_argument("--log", type=Path, help="also log to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    gold = load_hidden_gold(args.gold)
    labels = pd.read_parquet(args.labels)
    classes = prediction_classes(labels, args.labels)
    check_spans_against_sentences(labels, gold, args.labels, args.gold)
    unknown = set(labels["sent_id"].unique()) - set(gold["sent_id"].tolist())
    if unknown:
        raise GlodeInputError(args.labels, f"{len(unknown)} sentence ids not in {args.gold}")
    metrics = pseudo_label_quality(labels, classes, gold)
    meta = read_parquet_metadata(args.labels)
    metrics.update(labels=str(args.labels), gold=str(args.gold), epoch=meta.get("epoch"), classes=classes)
    write_json(metrics, args.out)
    log.info("%s: pseudo-label F1 %.2f (P %.2f R %.2f) on %d gold entities", args.labels, 100 * metrics["seqeval"]["f1"], 100 * metrics["seqeval"]["precision"], 100 * metrics["seqeval"]["recall"], metrics["counts"]["gold_entities"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
