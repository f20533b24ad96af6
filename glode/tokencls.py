"""`glode train-tokencls` and `glode predict-tokencls`: the field's standard zero-shot baseline.

A token classifier (`AutoModelForTokenClassification`) on the same backbone as the span model,
fine-tuned on the labeled source sentences only, then applied to a target language's sentences.
It is the system `source-tokencls` of the study (issue 20) and a row of Tables 1-2.

Parity with `source-plain` (glode train-source --use-mlm false): the same source sentences (the
same seeded sample), the backbone's same bottom `encoder_layers`, the same trained top layers and
frozen word embeddings, epochs, batch, warm-up and learning rates (`head_lr` for the fresh
classifier), AdamW grouping, gradient clipping, precision, and the span model's dropout before
the classifier. The training options are train-source's (so the workflow passes the `source`
section unchanged); the MLM options (mask rate, MLM weight and normalisation, projection) have
no effect here, and `--cache-frozen-layers` is refused.

Words meet the tokenizer as in the span model (`glode.spans.encode_words`, the same window of
`max_seq_len` subwords). The label of a word sits on its first subword; the other subwords, the
special tokens and padding are ignored by the loss (-100). A word that the window cuts off is
predicted O, as no span can reach it in the span model. Predicted tags are repaired to valid BIO
(`repair_bio`: an I-X that does not continue an X entity starts one) and written one row per
sentence (`sent_id`, `tags`), which `glode evaluate` scores with the same seqeval call as every
other system, on the full test file.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from glode.batching import LengthBucketBatchSampler, SpanCollator, move_batch, windowed_sentence
from glode.data import load_sentences
from glode.device import autocast, describe_device, seed_everything, select_device
from glode.io import TRAINING_SUMMARY_FILE, GlodeInputError, atomic_dir, atomic_path, read_json, setup_logging, write_json, write_parquet
from glode.model import adamw_parameter_groups, freeze_encoder, load_tokenizer
from glode.model_card import training_data, write_model_card
from glode.options import OptionError, add_options, options_from_args
from glode.spans import encode_words, sentence_tokenisation
from glode.textsplit import splitter_record
from glode.train_source import STREAM_SOURCE_ORDER, STREAM_SUBSAMPLE, SourceTrainingOptions, subsample
from glode.training import UpdateGroup, UpdateLog, accumulation_group_size, build_scheduler, optimizer_update, resolve_classes, sampler_seed, update_record

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # the label of subwords the loss skips (torch's cross-entropy default)


# -- tags ------------------------------------------------------------------------------------


def bio_labels(entity_types: Sequence[str]) -> list[str]:
    """The classifier's label list: O, then B-X and I-X for each entity type, in type order."""
    return ["O", *(f"{prefix}-{t}" for t in entity_types for prefix in ("B", "I"))]


def repair_bio(tags: Sequence[str]) -> list[str]:
    """Valid BIO: an `I-X` that follows neither `B-X` nor `I-X` becomes `B-X` (conlleval's reading)."""
    repaired: list[str] = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        repaired.append(tag)
        previous = tag
    return repaired


# -- items and batches -----------------------------------------------------------------------


def word_items(sentences: pd.DataFrame, tokenizer, max_seq_len: int, label_ids: dict[str, int] | None = None, path: Path | str = "<sentences>") -> list[dict]:
    """One item per sentence: windowed `input_ids` (glode.batching), `word_first` (each word's
    first subword, -1 where the window cut it off) and, with `label_ids`, `labels` per subword."""
    encoded = encode_words(tokenizer, sentences["tokens"].tolist(), sentence_tokenisation(sentences))
    sent_ids = sentences["sent_id"].to_numpy(dtype=np.int64)
    items = []
    for row, tokens in enumerate(sentences["tokens"].tolist()):
        item, (first, _) = windowed_sentence(encoded, row, len(tokens), int(sent_ids[row]), max_seq_len)
        item["word_first"] = first
        if label_ids is not None:
            tags = list(sentences["tags"].iloc[row])
            unknown = [t for t in tags if t not in label_ids]
            if unknown:
                raise GlodeInputError(path, f"sentence {sent_ids[row]}: tag {unknown[0]!r} is not one of {sorted(label_ids)}")
            labels = np.full(len(item["input_ids"]), IGNORE_INDEX, dtype=np.int64)
            reached = first >= 0
            labels[first[reached]] = [label_ids[t] for t, ok in zip(tags, reached) if ok]
            item["labels"] = labels
        items.append(item)
    return items


class WordCollator(SpanCollator):
    """SpanCollator's padded `input_ids`/`attention_mask`, plus `labels` [B, T] padded with -100."""

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        batch = super().__call__(items)
        if "labels" in items[0]:
            labels = np.full(tuple(batch["input_ids"].shape), IGNORE_INDEX, dtype=np.int64)
            for b, it in enumerate(items):
                labels[b, : len(it["labels"])] = it["labels"]
            batch["labels"] = torch.from_numpy(labels)
        return batch


def make_word_loader(items: list[dict], batch_size: int, pad_id: int, shuffle: bool, seed: int = 0):
    sampler = LengthBucketBatchSampler([len(it["input_ids"]) for it in items], batch_size, shuffle=shuffle, seed=seed)
    return torch.utils.data.DataLoader(items, batch_sampler=sampler, collate_fn=WordCollator(pad_id)), sampler


# -- the model -------------------------------------------------------------------------------


def build_token_classifier(backbone: str, labels: list[str], opts: SourceTrainingOptions):
    """`AutoModelForTokenClassification` on the backbone's bottom `encoder_layers`, frozen as the
    span model is (glode.model.SpanModel.freeze_encoder_parts)."""
    from transformers import AutoModelForTokenClassification
    from transformers.utils import logging as hf_logging

    from glode.backbone import explain_load_errors, local_load_options

    kwargs = dict(local_load_options(backbone, ("config", "weights")))
    if opts.encoder_layers > 0:
        kwargs["num_hidden_layers"] = opts.encoder_layers
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the unused pooler and top layers are expected, not news
    try:
        with explain_load_errors(backbone):
            model = AutoModelForTokenClassification.from_pretrained(
                backbone, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
                classifier_dropout=opts.dropout, **kwargs,
            )  # fmt: skip
    finally:
        hf_logging.set_verbosity(verbosity)
    freeze_encoder(model.base_model, opts.freeze_word_embeddings, opts.train_top_layers)
    return model


# -- training --------------------------------------------------------------------------------


def train_tokencls(source_sentences: Path, backbone: str, out: Path, train_log: Path | None, opts: SourceTrainingOptions,
                   entity_types: list[str] | None = None, max_seq_len: int = 128, progress: bool | None = None) -> dict:
    """Fine-tune the token classifier on the labeled source sentences; save it to `out`."""
    if opts.use_mlm:
        raise OptionError("--use-mlm must be false: the token classifier trains on the source labels only")
    if opts.cache_frozen_layers:
        raise OptionError("--cache-frozen-layers is not supported by train-tokencls (it runs every layer)")
    opts.validate()
    seed_everything(opts.seed)
    device = select_device(opts.device)
    log.info("device: %s", describe_device(device, opts.precision))

    sentences = subsample(load_sentences(source_sentences), opts.max_source_sentences, opts.seed, STREAM_SUBSAMPLE)
    if "tags" not in sentences.columns:
        raise GlodeInputError(source_sentences, "source sentences must be labeled (no `tags` column)")
    types = resolve_classes(source_sentences, entity_types)[1:]
    labels = bio_labels(types)
    tokenizer = load_tokenizer(backbone)
    items = word_items(sentences, tokenizer, max_seq_len, {l: i for i, l in enumerate(labels)}, source_sentences)
    model = build_token_classifier(backbone, labels, opts).to(device).train()
    groups = adamw_parameter_groups(model.named_parameters(), opts.weight_decay, opts.head_lr if opts.head_lr > 0 else None, encoder_prefix=model.base_model_prefix + ".")
    params = [p for g in groups for p in g["params"]]
    optimizer = torch.optim.AdamW(groups, lr=opts.lr, betas=(opts.adam_beta1, opts.adam_beta2), eps=opts.adam_eps)
    log.info("source: %d sentences; labels %s; parameters: %d trainable of %d", len(items), labels, sum(p.numel() for p in params), sum(p.numel() for p in model.parameters()))

    loader, sampler = make_word_loader(items, opts.batch_size, tokenizer.pad_token_id, shuffle=True, seed=sampler_seed(opts.seed, STREAM_SOURCE_ORDER))
    batches_per_epoch = len(sampler)
    total_updates = math.ceil(batches_per_epoch / opts.grad_accumulation) * opts.epochs
    scheduler = build_scheduler(optimizer, opts.warmup_steps, total_updates)

    step, started = 0, time.perf_counter()
    with contextlib.ExitStack() as outputs:
        log_file = outputs.enter_context(open(outputs.enter_context(atomic_path(train_log)), "w", encoding="utf-8")) if train_log else None
        update_log = UpdateLog(log_file, total_updates, "train-tokencls", progress)
        for epoch in range(opts.epochs):
            sampler.set_epoch(epoch)
            group = UpdateGroup(("loss",))
            for i, batch in enumerate(loader):
                group_size = accumulation_group_size(i, batches_per_epoch, opts.grad_accumulation)
                batch = move_batch(batch, device)
                with autocast(device, opts.precision):
                    loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
                (loss / group_size).backward()
                group.add({"loss": loss}, group_size, batch["input_ids"].shape[0])
                if group.batches < group_size:
                    continue
                lr = optimizer_update(optimizer, scheduler, params, opts.grad_clip)
                step += 1
                update_log.write(update_record(step, epoch, group, lr, group.sums), epoch=epoch, loss=f"{group.sums['loss']:.4f}")
                group = UpdateGroup(("loss",))
            log.info("epoch %d/%d done: update %d, loss %.4f", epoch + 1, opts.epochs, step, update_log.last.get("loss", float("nan")))
        update_log.close()
        summary = {
            "system": "source-tokencls",
            "options": dataclasses.asdict(opts),
            "max_seq_len": max_seq_len,
            "labels": labels,
            "inputs": {"source_sentences": str(source_sentences), "backbone": backbone},
            "splitter": splitter_record(sentences.attrs.get("glode", {})),
            "source_sentences": len(items),
            "updates": step,
            "last": update_log.last,
            "seconds": time.perf_counter() - started,
            "device": describe_device(device, opts.precision),
            "torch": torch.__version__,
        }
        model.eval()
        with atomic_dir(out) as tmp:
            model.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            write_json(summary, Path(tmp) / TRAINING_SUMMARY_FILE)
            write_model_card(tmp, summary, data=training_data(summary), final_dir=out)
    log.info("saved token classifier to %s (%d updates, %.0f s)", out, step, summary["seconds"])
    return summary


# -- prediction ------------------------------------------------------------------------------


def load_token_classifier(model_dir: Path, device: torch.device):
    """(model in eval mode on `device`, tokenizer, label list, max_seq_len) of a train-tokencls directory."""
    from transformers import AutoModelForTokenClassification

    summary_path = Path(model_dir) / TRAINING_SUMMARY_FILE
    if not summary_path.is_file():
        raise GlodeInputError(model_dir, f"not a train-tokencls model directory (no {TRAINING_SUMMARY_FILE})")
    summary = read_json(summary_path)
    if summary.get("system") != "source-tokencls":
        raise GlodeInputError(model_dir, f"{TRAINING_SUMMARY_FILE} is not a token classifier's (system {summary.get('system')!r})")
    model = AutoModelForTokenClassification.from_pretrained(str(model_dir), local_files_only=True).to(device).eval()
    return model, load_tokenizer(model_dir), list(summary["labels"]), int(summary["max_seq_len"])


@torch.no_grad()
def predict_tags(model, tokenizer, labels: list[str], max_seq_len: int, sentences: pd.DataFrame, device: torch.device,
                 batch_size: int = 64, precision: str = "auto", with_probs: bool = False):
    """Repaired BIO tags per sentence, in `sentences` order; words beyond the window are O. With
    `with_probs`, also each word's probability of its argmax tag (1.0 past the window)."""
    items = word_items(sentences, tokenizer, max_seq_len)
    loader, _ = make_word_loader(items, batch_size, tokenizer.pad_token_id, shuffle=False)
    tags: list = [None] * len(items)
    probs: list = [None] * len(items)
    for batch in loader:
        rows = batch["sentence_rows"].tolist()
        batch = move_batch(batch, device)
        with autocast(device, precision):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        best_prob, best = logits.float().softmax(-1).max(-1)
        best, best_prob = best.cpu().numpy(), best_prob.cpu().numpy()
        for b, row in enumerate(rows):
            first = items[row]["word_first"]
            tags[row] = repair_bio([labels[best[b, f]] if f >= 0 else "O" for f in first])
            probs[row] = [float(best_prob[b, f]) if f >= 0 else 1.0 for f in first]
    return (tags, probs) if with_probs else tags


def predict_tokencls(model_dir: Path, sentences_path: Path, out: Path, device_spec: str = "auto", batch_size: int = 64, precision: str = "auto") -> pd.DataFrame:
    """Write one row per sentence (`sent_id`, `tags`: predicted BIO per word) to `out`."""
    device = select_device(device_spec)
    model, tokenizer, labels, max_seq_len = load_token_classifier(model_dir, device)
    sentences = load_sentences(sentences_path)
    started = time.perf_counter()
    tags = predict_tags(model, tokenizer, labels, max_seq_len, sentences, device, batch_size, precision)
    frame = pd.DataFrame({"sent_id": sentences["sent_id"].to_numpy(dtype=np.int64), "tags": tags})
    types = sorted({l[2:] for l in labels if l != "O"}, key=[l[2:] for l in labels].index)
    write_parquet(frame, out, metadata={"system": "source-tokencls", "model": str(model_dir), "sentences": str(sentences_path), "classes": ["O", *types]})
    log.info("%s: tagged %d sentences in %.1f s (%s)", out, len(frame), time.perf_counter() - started, describe_device(device, precision))
    return frame


# -- CLIs ------------------------------------------------------------------------------------


def build_train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glode train-tokencls", description="train the token-classification baseline on the labeled source sentences")
    parser.add_argument("--source-sentences", required=True, type=Path, help="labeled source train sentences Parquet")
    parser.add_argument("--backbone", required=True, help="Hugging Face encoder name or directory (with its tokenizer)")
    parser.add_argument("--entity-types", nargs="+", help="entity types in class order (default: the source file's metadata)")
    parser.add_argument("--max-seq-len", type=int, default=128, help="subword window, as the spans stage's (default 128)")
    parser.add_argument("--out", required=True, type=Path, help="model directory to write")
    parser.add_argument("--train-log", type=Path, help="JSONL training log to write")
    parser.add_argument("--log", type=Path, help="also log to this file")
    add_options(parser, SourceTrainingOptions, "training options (train-source's; the MLM ones have no effect)")
    return parser


def train_main(argv: list[str] | None = None) -> int:
    args = build_train_parser().parse_args(argv)
    setup_logging(args.log)
    opts = options_from_args(SourceTrainingOptions, args)
    train_tokencls(args.source_sentences, args.backbone, args.out, args.train_log, opts, args.entity_types, args.max_seq_len)
    return 0


def build_predict_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glode predict-tokencls", description="tag sentences with a train-tokencls model (BIO per word, repaired)")
    parser.add_argument("--model", required=True, type=Path, help="train-tokencls model directory")
    parser.add_argument("--sentences", required=True, type=Path, help="sentences Parquet to tag")
    parser.add_argument("--out", required=True, type=Path, help="Parquet to write: sent_id, tags")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per forward pass")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"), help="as pseudo-label's")
    parser.add_argument("--log", type=Path, help="also log to this file")
    return parser


def predict_main(argv: list[str] | None = None) -> int:
    args = build_predict_parser().parse_args(argv)
    setup_logging(args.log)
    if args.batch_size < 1:
        raise OptionError("--batch-size must be >= 1")
    predict_tokencls(args.model, args.sentences, args.out, args.device, args.batch_size, args.precision)
    return 0
