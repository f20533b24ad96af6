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
    parser.add_argument("--labels", required=True, nargs="+", type=Path, help="pseudo labels Parquet file(s) (initial or an epoch's)")
    parser.add_argument("--gold", required=True, type=Path, help="hidden gold Parquet of the target train split")
    parser.add_argument("--out", required=True, nargs="+", type=Path, help="quality JSON to write, one per --labels file, in the same order")
    parser.add_argument("--log", type=Path, help="also log to this file")
    return parser


def score_labels_file(labels_path: Path, gold: pd.DataFrame, gold_path: Path, out: Path) -> None:
    labels = pd.read_parquet(labels_path)
    classes = prediction_classes(labels, labels_path)
    check_spans_against_sentences(labels, gold, labels_path, gold_path)
    unknown = set(labels["sent_id"].unique()) - set(gold["sent_id"].tolist())
    if unknown:
        raise GlodeInputError(labels_path, f"{len(unknown)} sentence ids not in {gold_path}")
    metrics = pseudo_label_quality(labels, classes, gold)
    meta = read_parquet_metadata(labels_path)
    # An epoch's labels carry how many spans changed argmax in that epoch (Figure 3's companion).
    metrics.update(labels=str(labels_path), gold=str(gold_path), epoch=meta.get("epoch"), labels_changed=meta.get("labels_changed"), classes=classes)
    write_json(metrics, out)
    log.info("%s: pseudo-label F1 %.2f (P %.2f R %.2f) on %d gold entities", labels_path, 100 * metrics["seqeval"]["f1"], 100 * metrics["seqeval"]["precision"], 100 * metrics["seqeval"]["recall"], metrics["counts"]["gold_entities"])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if len(args.labels) != len(args.out):
        parser.error(f"{len(args.labels)} --labels files but {len(args.out)} --out files")
    setup_logging(args.log)
    gold = load_hidden_gold(args.gold)
    for labels_path, out in zip(args.labels, args.out):  # several epochs of a run: one process start-up
        score_labels_file(labels_path, gold, args.gold, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
