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
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd
import torch

from glode.batching import build_items, make_loader, move_batch, read_spans
from glode.data import load_sentences
from glode.device import autocast, describe_device, seed_everything, select_device
from glode.io import GlodeInputError, atomic_dir, atomic_path, read_parquet_metadata, setup_logging
from glode.model import load_tokenizer
from glode.objectives import source_objective, span_cross_entropy
from glode.options import add_options, option, options_from_args
from glode.spans import read_span_settings
from glode.textsplit import splitter_record
from glode.tokenizer import special_token_ids
from glode.training import (
    TrainingOptions,
    UpdateGroup,
    UpdateLog,
    accumulation_group_size,
    build_optimizer,
    build_scheduler,
    build_span_model,
    corpus_vocabulary,
    frozen_states_for,
    masked_lm_step,
    optimizer_update,
    resolve_classes,
    sampler_seed,
    save_model_dir,
    stream_generator,
    update_record,
)

log = logging.getLogger(__name__)

# The run's random streams (glode.training.sampler_seed, stream_generator); glode.tokencls uses
# the same ones, so the token classifier sees source-plain's English sample in the same order.
STREAM_SOURCE_ORDER, STREAM_TARGET_ORDER, STREAM_MASKS, STREAM_SUBSAMPLE = 0, 1, 2, 3
_LOSS_KEYS = ("loss_src", "loss_mlm", "loss_total")


@dataclass
class SourceTrainingOptions(TrainingOptions):
    epochs: int = option(8, "passes over the source sentences (paper: 8)", minimum=1)
    use_mlm: bool = option(True, "false: no MLM term (ablation 'w/o mlm init', zero-shot baseline)")
    max_source_sentences: int = option(0, "demo scale: seeded subsample of the source sentences (0 = all)", minimum=0)
    max_target_sentences: int = option(0, "demo scale: seeded subsample of the target sentences (0 = all)", minimum=0)

    def validate(self) -> None:
        self.validate_common()


def subsample(df: pd.DataFrame, limit: int, seed: int, stream: int) -> pd.DataFrame:
    """A seeded random subset of `limit` rows (all when limit <= 0), kept in file order."""
    if limit <= 0 or limit >= len(df):
        return df
    generator = stream_generator(seed, stream)
    keep = torch.randperm(len(df), generator=generator)[:limit].sort().values.numpy()
    return df.iloc[keep].reset_index(drop=True)


def cycle(loader, sampler) -> Iterator[dict]:
    """Batches of `loader` forever; the sampler reshuffles on every pass."""
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def source_batches(source_items: list[dict], target_items: list[dict], pad_id: int, opts: SourceTrainingOptions):
    """(source loader, its sampler, an endless iterator of target MLM batches or None)."""
    src_loader, src_sampler = make_loader(source_items, opts.batch_size, pad_id, shuffle=True, seed=sampler_seed(opts.seed, STREAM_SOURCE_ORDER), num_workers=opts.num_workers)
    if not opts.use_mlm:
        return src_loader, src_sampler, None
    tgt_loader, tgt_sampler = make_loader(target_items, opts.batch_size, pad_id, shuffle=True, seed=sampler_seed(opts.seed, STREAM_TARGET_ORDER), num_workers=opts.num_workers)
    return src_loader, src_sampler, cycle(tgt_loader, tgt_sampler)


def load_source_inputs(source_sentences: Path, source_spans: Path, target_sentences: Path | None, backbone: str, entity_types: list[str] | None, opts: SourceTrainingOptions):
    """(classes, span settings, tokenizer, source items, their spans, target items), validated."""
    src = subsample(load_sentences(source_sentences), opts.max_source_sentences, opts.seed, STREAM_SUBSAMPLE)
    if "tags" not in src.columns:
        raise GlodeInputError(source_sentences, "source sentences must be labeled (no `tags` column)")
    classes = resolve_classes(source_sentences, entity_types)
    span_settings = read_span_settings(source_spans)
    spans = read_spans(source_spans)
    if opts.max_source_sentences > 0:  # keep the subsample's spans (otherwise a stray sent_id is an error)
        spans = spans[spans["sent_id"].isin(set(src["sent_id"].tolist()))].reset_index(drop=True)
    if spans["label"].isna().any():
        raise GlodeInputError(source_spans, "source spans must carry gold labels (found null labels)")

    tokenizer = load_tokenizer(backbone)
    source_items = build_items(src, tokenizer, span_settings.max_seq_len, spans, classes, max_span_len=span_settings.max_span_len, spans_path=source_spans)
    target_items: list[dict] = []
    if opts.use_mlm:
        if target_sentences is None:
            raise ValueError("--target-sentences is required unless --use-mlm false")
        tgt = subsample(load_sentences(target_sentences), opts.max_target_sentences, opts.seed, STREAM_SUBSAMPLE + 1)
        target_items = build_items(tgt, tokenizer, span_settings.max_seq_len)
    log.info("source: %d sentences, %d spans; target (MLM): %d sentences; classes %s", len(source_items), len(spans), len(target_items), classes)
    return classes, span_settings, tokenizer, source_items, spans, target_items


def source_summary(opts: SourceTrainingOptions, span_settings, inputs: dict, classes: list[str], n_source: int, n_spans: int, n_target: int,
                   updates: int, last: dict, seconds: float, device: torch.device) -> dict:
    """glode_training.json of a source model: its settings, inputs, data sizes and last update."""
    return {
        "options": dataclasses.asdict(opts),
        "span_settings": dataclasses.asdict(span_settings),
        "inputs": {name: str(path) if path else None for name, path in inputs.items()},
        "classes": classes,
        # how the target language's words met the tokenizer: `glode tag`'s default for this model
        "target_tokenisation": read_parquet_metadata(inputs["target_sentences"]).get("tokenisation", "words") if inputs.get("target_sentences") else "words",
        "splitter": splitter_record(read_parquet_metadata(inputs.get("target_sentences") or inputs["source_sentences"])),  # how raw text given to it is split
        "source_sentences": n_source,
        "source_spans": n_spans,
        "target_sentences": n_target,
        "updates": updates,
        "last": last,
        "seconds": seconds,
        "device": describe_device(device, opts.precision),
        "torch": torch.__version__,
    }


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
    mlm_vocab: Path | None = None,
    frozen_states: Path | None = None,
) -> dict:
    """Train the source model (Eq. 3) and save it to `out`; returns a summary dict. With
    `mlm_vocab` (a `glode vocab` file) the MLM softmax runs over those pieces only; with
    `opts.cache_frozen_layers`, `frozen_states` (`glode frozen-states` of the source sentences)
    replaces the frozen bottom layers of the span batches."""
    opts.validate()
    seed_everything(opts.seed)
    device = select_device(opts.device)
    log.info("device: %s", describe_device(device, opts.precision))
    classes, span_settings, tokenizer, source_items, spans, target_items = load_source_inputs(source_sentences, source_spans, target_sentences, backbone, entity_types, opts)

    model = build_span_model(opts, classes, span_settings, device, backbone=backbone, train_projection=opts.train_projection)
    optimizer, params = build_optimizer(model, opts.lr, (opts.adam_beta1, opts.adam_beta2), opts.adam_eps, opts.weight_decay, opts.head_lr)
    log.info("parameters: %d trainable of %d", sum(p.numel() for p in params), sum(p.numel() for p in model.parameters()))

    src_loader, src_sampler, target_batches = source_batches(source_items, target_items, tokenizer.pad_token_id, opts)
    mask_generator = stream_generator(opts.seed, STREAM_MASKS)
    vocabulary = corpus_vocabulary(mlm_vocab if opts.use_mlm else None, model, device)
    frozen_depth = frozen_states_for(opts, model, (source_items, frozen_states))
    specials = special_token_ids(tokenizer)

    batches_per_epoch = len(src_sampler)
    total_updates = math.ceil(batches_per_epoch / opts.grad_accumulation) * opts.epochs
    scheduler = build_scheduler(optimizer, opts.warmup_steps, total_updates)

    step = 0
    started = time.perf_counter()
    with contextlib.ExitStack() as outputs:
        # The log goes to a temporary file renamed into place together with the model, at the end.
        log_file = outputs.enter_context(open(outputs.enter_context(atomic_path(train_log)), "w", encoding="utf-8")) if train_log else None
        update_log = UpdateLog(log_file, total_updates, "train-source", progress)
        for epoch in range(opts.epochs):
            src_sampler.set_epoch(epoch)
            group = UpdateGroup(_LOSS_KEYS)
            for i, batch in enumerate(src_loader):
                # the last update of an epoch may gather fewer batches; average over those it has
                group_size = accumulation_group_size(i, batches_per_epoch, opts.grad_accumulation)
                batch = move_batch(batch, device)
                with autocast(device, opts.precision):
                    output = model(**batch, frozen_depth=frozen_depth)
                loss_src = span_cross_entropy(output.logits, batch["labels"], batch["span_sentence"], batch["input_ids"].shape[0])  # Eq. 1
                loss_mlm = torch.zeros((), device=device)
                if target_batches is not None:
                    loss_mlm = masked_lm_step(model, next(target_batches), tokenizer.mask_token_id, specials, opts.mask_rate, opts.mlm_normalisation, mask_generator, device, vocabulary, opts.precision)  # Eq. 2
                loss = source_objective(loss_src, loss_mlm, opts.mlm_weight)  # Eq. 3
                (loss / group_size).backward()
                group.add({"loss_src": loss_src, "loss_mlm": loss_mlm, "loss_total": loss}, group_size, batch["input_ids"].shape[0])
                if group.batches < group_size:
                    continue
                lr = optimizer_update(optimizer, scheduler, params, opts.grad_clip)
                step += 1
                losses = {**group.sums, "loss_mlm": group.sums["loss_mlm"] if opts.use_mlm else None}
                update_log.write(update_record(step, epoch, group, lr, losses), epoch=epoch, loss=f"{group.sums['loss_total']:.4f}")
                group = UpdateGroup(_LOSS_KEYS)
            log.info("epoch %d/%d done: update %d, loss_src %.4f, loss_mlm %s", epoch + 1, opts.epochs, step, update_log.last.get("loss_src", float("nan")), update_log.last.get("loss_mlm"))
        update_log.close()

        inputs = {"source_sentences": source_sentences, "source_spans": source_spans, "target_sentences": target_sentences, "backbone": backbone, "mlm_vocab": mlm_vocab, "frozen_states": frozen_states}
        summary = source_summary(opts, span_settings, inputs, classes, len(source_items), len(spans), len(target_items), step, update_log.last, time.perf_counter() - started, device)
        model.eval()
        with atomic_dir(out) as tmp:
            save_model_dir(tmp, model, tokenizer, summary, final_dir=out)
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
    parser.add_argument("--frozen-states", type=Path, help="`glode frozen-states` of the source sentences (with --cache-frozen-layers true)")
    parser.add_argument("--mlm-vocab", type=Path, help="`glode vocab` file: the MLM softmax over its pieces only (default: the whole vocabulary, as the paper)")
    parser.add_argument("--log", type=Path, help="also log to this file")
    add_options(parser, SourceTrainingOptions, "training options")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    opts = options_from_args(SourceTrainingOptions, args)
    train_source(args.source_sentences, args.source_spans, args.target_sentences, args.backbone, args.entity_types, args.out, args.train_log, opts, mlm_vocab=args.mlm_vocab, frozen_states=args.frozen_states)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
