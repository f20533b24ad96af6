"""`glode train-source`: the source model of paper Eq. 3, L_S = L_src + w * L_mlm.

Each step takes one batch of labeled source sentences (span cross-entropy over all their
candidate spans, Eq. 1) and one batch of unlabeled target sentences (masked-LM loss, Eq. 2) and
backpropagates L_src + w * L_mlm; gradients are accumulated over `grad_accumulation` steps
(8 x 4 = the paper's batch of 32) before one AdamW update. An epoch is one pass over the source
sentences; the target batches cycle through the target sentences, reshuffled on every pass.
`--use-mlm false` drops the MLM term and never reads target batches: the ablation "w/o mlm
init" and the plain zero-shot baseline.

Outputs: --out, a Hugging Face model directory (config.json, model.safetensors, the tokenizer,
and glode_training.json with the options and inputs), written atomically; --train-log, one JSON
line per optimizer update (step, epoch, loss_src, loss_mlm, loss_total, lr, sentences_per_s =
source sentences per second over that update).

Same seed, same machine and same thread count -> identical weights on the CPU: all randomness
comes from `seed` (model heads' initialisation, dropout, batch order, MLM masks, demo
subsampling). On CUDA, atomic additions (index_add, embedding backward) can still differ in the
last bits between runs.

AdamW decays weight matrices only (not biases and LayerNorm weights, the usual Hugging Face
grouping); the warm-up/decay schedule counts optimizer updates, not batches.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd
import torch

from glode.batching import build_items, make_loader, move_batch, read_spans
from glode.data import class_names, load_sentences
from glode.device import autocast, describe_device, make_generator, seed_everything, select_device
from glode.io import GlodeInputError, atomic_dir, atomic_path, read_parquet_metadata, setup_logging, write_json
from glode.model import SpanModel, load_tokenizer, span_cross_entropy
from glode.options import add_options, option, options_from_args
from glode.training import (
    TrainingOptions,
    UpdateGroup,
    source_objective,
    accumulation_group_size,
    build_optimizer,
    build_scheduler,
    masked_lm_step,
    optimizer_update,
    special_token_ids,
)

log = logging.getLogger(__name__)

# Offsets that tell the run's random streams apart (glode.device.make_generator).
_STREAM_SOURCE_ORDER, _STREAM_TARGET_ORDER, _STREAM_MASKS, _STREAM_SUBSAMPLE = 0, 1, 2, 3
_LOSS_KEYS = ("loss_src", "loss_mlm", "loss_total")


@dataclass
class SourceTrainingOptions(TrainingOptions):
    epochs: int = option(8, "passes over the source sentences (paper: 8)")
    use_mlm: bool = option(True, "false: no MLM term (ablation 'w/o mlm init', zero-shot baseline)")
    max_source_sentences: int = option(0, "demo scale: seeded subsample of the source sentences (0 = all)")
    max_target_sentences: int = option(0, "demo scale: seeded subsample of the target sentences (0 = all)")

    def validate(self) -> None:
        self.validate_common()
        if self.epochs < 1:
            raise ValueError("--epochs must be >= 1")


def subsample(df: pd.DataFrame, limit: int, seed: int, stream: int) -> pd.DataFrame:
    """A seeded random subset of `limit` rows (all when limit <= 0), kept in file order."""
    if limit <= 0 or limit >= len(df):
        return df
    generator = make_generator(seed, stream)
    keep = torch.randperm(len(df), generator=generator)[:limit].sort().values.numpy()
    return df.iloc[keep].reset_index(drop=True)


def cycle(loader, sampler) -> Iterator[dict]:
    """Batches of `loader` forever; the sampler reshuffles on every pass."""
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def train_source(
    source_sentences: Path,
    source_spans: Path,
    target_sentences: Path | None,
    backbone: str,
    entity_types: list[str] | None,
    out: Path,
    train_log: Path | None,
    opts: SourceTrainingOptions,
    progress: bool | None = None,
) -> dict:
    """Train the source model (Eq. 3) and save it to `out`; returns a summary dict."""
    from tqdm.auto import tqdm

    opts.validate()
    seed_everything(opts.seed)
    device = select_device(opts.device)
    log.info("device: %s", describe_device(device))

    src = subsample(load_sentences(source_sentences), opts.max_source_sentences, opts.seed, _STREAM_SUBSAMPLE)
    if "tags" not in src.columns:
        raise GlodeInputError(source_sentences, "source sentences must be labeled (no `tags` column)")
    src_meta = read_parquet_metadata(source_sentences)
    entity_types = list(entity_types or src_meta.get("entity_types") or [])
    if not entity_types:
        raise GlodeInputError(source_sentences, "no entity types given (--entity-types) and none in the file's metadata")
    classes = class_names(entity_types)
    spans = read_spans(source_spans)
    if opts.max_source_sentences > 0:  # keep the subsample's spans (otherwise a stray sent_id is an error)
        spans = spans[spans["sent_id"].isin(set(src["sent_id"].tolist()))].reset_index(drop=True)
    if spans["label"].isna().any():
        raise GlodeInputError(source_spans, "source spans must carry gold labels (found null labels)")

    tokenizer = load_tokenizer(backbone)
    source_items = build_items(src, tokenizer, opts.max_seq_len, spans, classes, max_span_len=opts.max_span_len, spans_path=source_spans)
    target_items: list[dict] = []
    if opts.use_mlm:
        if target_sentences is None:
            raise ValueError("--target-sentences is required unless --use-mlm false")
        tgt = subsample(load_sentences(target_sentences), opts.max_target_sentences, opts.seed, _STREAM_SUBSAMPLE + 1)
        target_items = build_items(tgt, tokenizer, opts.max_seq_len)
    log.info("source: %d sentences, %d spans; target (MLM): %d sentences; classes %s", len(source_items), len(spans), len(target_items), classes)

    model = SpanModel.from_backbone(backbone, classes, encoder_layers=opts.encoder_layers, dropout=opts.dropout, max_span_len=opts.max_span_len, train_projection=opts.train_projection)
    model.freeze_encoder_parts(opts.freeze_word_embeddings, opts.train_top_layers)
    model.to(device).train()
    optimizer, params = build_optimizer(model, opts.lr, (opts.adam_beta1, opts.adam_beta2), opts.adam_eps, opts.weight_decay, opts.head_lr)
    log.info("parameters: %d trainable of %d", sum(p.numel() for p in params), sum(p.numel() for p in model.parameters()))

    pad_id = tokenizer.pad_token_id
    src_loader, src_sampler = make_loader(source_items, opts.batch_size, pad_id, shuffle=True, seed=opts.seed * 1000 + _STREAM_SOURCE_ORDER, num_workers=opts.num_workers)
    target_batches = None
    if opts.use_mlm:
        tgt_loader, tgt_sampler = make_loader(target_items, opts.batch_size, pad_id, shuffle=True, seed=opts.seed * 1000 + _STREAM_TARGET_ORDER, num_workers=opts.num_workers)
        target_batches = cycle(tgt_loader, tgt_sampler)
    mask_generator = make_generator(opts.seed, _STREAM_MASKS)
    specials = special_token_ids(tokenizer)

    batches_per_epoch = len(src_sampler)
    updates_per_epoch = math.ceil(batches_per_epoch / opts.grad_accumulation)
    total_updates = updates_per_epoch * opts.epochs
    scheduler = build_scheduler(optimizer, opts.warmup_steps, total_updates)

    if progress is None:
        progress = sys.stderr.isatty()
    bar = tqdm(total=total_updates, desc="train-source", unit="update", disable=not progress)
    step = 0
    last: dict = {}
    started = time.perf_counter()
    with contextlib.ExitStack() as outputs:
        # The log goes to a temporary file renamed into place together with the model, at the end.
        log_file = outputs.enter_context(open(outputs.enter_context(atomic_path(train_log)), "w", encoding="utf-8")) if train_log else None
        for epoch in range(opts.epochs):
            src_sampler.set_epoch(epoch)
            group = UpdateGroup(_LOSS_KEYS)
            for i, batch in enumerate(src_loader):
                # the last update of an epoch may gather fewer batches; average over those it has
                group_size = accumulation_group_size(i, batches_per_epoch, opts.grad_accumulation)
                batch = move_batch(batch, device)
                with autocast(device):
                    output = model(**batch)
                loss_src = span_cross_entropy(output.logits, batch["labels"], batch["span_sentence"], batch["input_ids"].shape[0])
                loss_mlm = torch.zeros((), device=device)
                if target_batches is not None:
                    loss_mlm = masked_lm_step(model, next(target_batches), tokenizer.mask_token_id, specials, opts.mask_rate, opts.mlm_normalisation, mask_generator, device)
                loss = source_objective(loss_src, loss_mlm, opts.mlm_weight)
                (loss / group_size).backward()
                group.add({"loss_src": loss_src, "loss_mlm": loss_mlm, "loss_total": loss}, group_size, batch["input_ids"].shape[0])
                if group.batches < group_size:
                    continue
                lr = optimizer_update(optimizer, scheduler, params, opts.grad_clip)
                step += 1
                last = {
                    "step": step,
                    "epoch": epoch,
                    "loss_src": group.sums["loss_src"],
                    "loss_mlm": group.sums["loss_mlm"] if opts.use_mlm else None,
                    "loss_total": group.sums["loss_total"],
                    "lr": lr,
                    "sentences_per_s": group.sentences_per_s(),
                }
                if log_file is not None:
                    log_file.write(json.dumps(last) + "\n")
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{group.sums['loss_total']:.4f}")
                group = UpdateGroup(_LOSS_KEYS)
            log.info("epoch %d/%d done: update %d, loss_src %.4f, loss_mlm %s", epoch + 1, opts.epochs, step, last.get("loss_src", float("nan")), last.get("loss_mlm"))
        bar.close()

        summary = {
            "options": dataclasses.asdict(opts),
            "inputs": {
                "source_sentences": str(source_sentences),
                "source_spans": str(source_spans),
                "target_sentences": str(target_sentences) if target_sentences else None,
                "backbone": str(backbone),
            },
            "classes": classes,
            "source_sentences": len(source_items),
            "source_spans": int(len(spans)),
            "target_sentences": len(target_items),
            "updates": step,
            "last": last,
            "seconds": time.perf_counter() - started,
            "device": describe_device(device),
            "torch": torch.__version__,
        }
        model.eval()
        with atomic_dir(out) as tmp:
            model.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            write_json(summary, Path(tmp) / "glode_training.json")
    log.info("saved source model to %s (%d updates, %.0f s)", out, step, summary["seconds"])
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glode train-source", description=__doc__.splitlines()[0])
    parser.add_argument("--source-sentences", required=True, type=Path, help="labeled source train sentences Parquet")
    parser.add_argument("--source-spans", required=True, type=Path, help="its spans Parquet (with gold labels)")
    parser.add_argument("--target-sentences", type=Path, help="unlabeled target train sentences Parquet (MLM; required unless --use-mlm false)")
    parser.add_argument("--backbone", required=True, help="Hugging Face encoder name or directory (with its tokenizer)")
    parser.add_argument("--entity-types", nargs="+", help="label set without O, in class order (default: the source file's metadata)")
    parser.add_argument("--out", required=True, type=Path, help="model directory to write")
    parser.add_argument("--train-log", type=Path, help="JSONL training log to write")
    parser.add_argument("--log", type=Path, help="also log to this file")
    add_options(parser, SourceTrainingOptions, "training options")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    opts = options_from_args(SourceTrainingOptions, args)
    train_source(args.source_sentences, args.source_spans, args.target_sentences, args.backbone, args.entity_types, args.out, args.train_log, opts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
