"""`glode train-target`: one epoch of the target model of paper Eq. 5 with global-local denoising.

    L_T = L_src + L_tgt + w * L_mlm                                              (Eq. 5)

The target model starts from the pretrained backbone (not from the source model). Each step
takes one batch of labeled source sentences and one batch of unlabeled target sentences:

1. forward both batches (with the 128-d denoising projections z_s, z_t);
2. L_src: span cross-entropy of the source spans against their gold labels (Eq. 1);
3. denoising (glode.denoise.Denoiser): `observe` the prototypes with the source gold labels and
   the target spans' current pseudo argmax (Eq. 6); `refine` the target spans' soft labels
   (Eqs. 8-11, beta = beta_schedule(epoch, num_epochs)) and write them back into the in-memory
   label store;
4. L_tgt: soft cross-entropy of the target spans against their refined, detached labels (Eq. 4);
5. the auxiliary term on the same target sentences: `mlm` = Eq. 2 on a masked copy (w =
   mlm_weight), `supcon` = a supervised contrastive loss on the projections of the step's source
   (gold) and target (refined pseudo argmax) spans (w = supcon_weight; Table 4's GLoDe_agnostic),
   `none` = no auxiliary term (ablation w/o mlm);
6. gradients are accumulated over `grad_accumulation` steps before one AdamW update.

An epoch is one pass over the target sentences, so every target span is refined exactly once per
epoch. At the end of the epoch `Denoiser.end_epoch` sets the thresholds (Eq. 7) from the
projections and local scores collected during the epoch and rebuilds the neighbour bank from this
epoch's projections (every entity span and a seeded `bank_o_fraction` of O spans, source with gold
labels and target with refined pseudo argmax).

ONE EPOCH PER INVOCATION. `--epoch 0` starts fresh from `--backbone` and the initial pseudo labels
(`glode pseudo-label` of a source model); `--epoch E > 0` resumes from `--state-in`, the state
that epoch E-1 wrote, and its refined labels (`--labels-in`). The LR schedule spans
num_epochs x updates-per-epoch updates, so it is the same however the epochs are split into jobs.

State directory (`--state-out`, written atomically; the next epoch's `--state-in`):

    model/                                        the span model as a complete HF directory (config.json,
                                                  model.safetensors, tokenizer, glode_training.json): the
                                                  last epoch's is the final model (same as --model-out)
    optimizer.pt                                  {"optimizer": AdamW state, "scheduler": LR schedule state}
    denoiser.safetensors                          Denoiser.state_dict(): prototypes, global/local thresholds,
                                                  bank.embeddings, bank.labels (absent with --denoise false)
    rng.pt                                        Python, NumPy, torch CPU/CUDA states and the run's named
                                                  generators (masks, supcon, bank)
    trainer.json                                  epoch done, update step, steps per epoch, options, denoise
                                                  config, classes, sha256 of the labels written, inputs

Resuming checks that the state is epoch E-1's, that the options and denoise config are the ones it
was trained with (device and num_workers may differ) and that --labels-in holds exactly the labels
that epoch wrote (sha256 of the probabilities).

Outputs: --labels-out (the refined pseudo labels: the predictions table of docs/data-formats.md plus
an `epoch` int16 column; metadata: epoch, denoise config, labels changed/updated, thresholds and
bank size), --state-out, --model-out (optional: the model HF-style with the tokenizer and
glode_training.json, as `train-source` writes it; give it on the last epoch), --train-log (JSON
lines per update: step, epoch, loss_src, loss_tgt, loss_aux, loss_mlm (= loss_aux for `mlm`,
else null), loss_total, lr, sentences_per_s (target sentences), labels_changed and labels_updated
so far this epoch, denoise_s (seconds spent in the denoiser during the update)).

Choices (beyond glode/denoise.py's own):
* source batches cycle through an endless sequence of reshuffled passes over the source sentences;
  batch g of that sequence depends only on (seed, g), and epoch E uses batches
  E*steps_per_epoch ... (E+1)*steps_per_epoch - 1, so no iterator state has to be carried.
* prototypes observe the target batch's labels as they arrived (before refinement); thresholds,
  the bank and supcon use the refined labels' argmax (the pseudo labels at the end of the epoch).
* projections are those of the training forward pass (encoder dropout on, the model moving
  during the epoch); no separate inference pass is made.
* Denoiser timing: global thresholds and the bank exist from the end of epoch 0, local thresholds
  from the end of epoch 1. So no label can change in epoch 0 whatever `update_start_epoch` is;
  with both levels on the first possible update is in epoch 2 (epoch 1 with --use-local false).
* supcon: the projection head must learn, so `train_projection` is forced on (the denoising space
  then moves with training). At most `supcon_max_spans` spans enter the loss per step: all entity
  spans (a seeded random subset if they alone exceed the cap), then a seeded random subset of the
  O spans for the rest.
* --denoise false: no Denoiser at all (labels never change; the state has no denoiser file).
* The in-memory label store is float32, like the Parquet columns, so writing the labels out and
  reading them back at the next epoch loses nothing.

Determinism: same seed, same machine and thread count -> byte-identical labels and weights,
whether an epoch runs once or is rerun from the previous epoch's state (CPU; on CUDA atomic
additions can differ in the last bits).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Sampler

from glode.batching import LengthBucketBatchSampler, SpanCollator, build_items, make_loader, move_batch, read_spans
from glode.data import class_names, load_sentences
from glode.denoise import DenoiseConfig, Denoiser
from glode.device import autocast, describe_device, make_generator, seed_everything, select_device
from glode.io import GlodeInputError, atomic_dir, atomic_path, read_json, read_parquet_metadata, setup_logging, write_json, write_parquet
from glode.model import SpanModel, load_tokenizer, soft_span_cross_entropy, span_cross_entropy
from glode.options import add_options, option, options_from_args
from glode.pseudo_label import predictions_frame
from glode.training import (
    TrainingOptions,
    UpdateGroup,
    target_objective,
    accumulation_group_size,
    build_optimizer,
    build_scheduler,
    capture_rng_state,
    masked_lm_step,
    optimizer_update,
    restore_rng_state,
    special_token_ids,
    supervised_contrastive_loss,
)

log = logging.getLogger(__name__)

AUX_TASKS = ("mlm", "supcon", "none")
# Offsets that tell the run's random streams apart (glode.device.make_generator).
_STREAM_SOURCE_ORDER, _STREAM_TARGET_ORDER, _STREAM_MASKS, _STREAM_SUPCON, _STREAM_BANK = 0, 1, 2, 3, 4
_LOSS_KEYS = ("loss_src", "loss_tgt", "loss_aux", "loss_total")
# Options that may differ between the epochs of one run (they do not change the numbers on a CPU).
_RESUMABLE_DIFFERENCES = {"device", "num_workers"}
# The target spans' columns the stage reads: never `label` (the unlabeled split has none to read).
_TARGET_SPAN_COLUMNS = ("sent_id", "start", "end", "width", "morph")
STATE_FILES = ("model", "optimizer.pt", "rng.pt", "trainer.json")


@dataclass
class TargetTrainingOptions(TrainingOptions):
    num_epochs: int = option(8, "target epochs of the whole run (paper: 8, 6 for zh; authors' code: 5); sets the LR schedule and beta")
    aux_task: str = option("mlm", "auxiliary term of Eq. 5: mlm (GLoDe), supcon (Table 4's GLoDe_agnostic), none (ablation w/o mlm)")
    supcon_weight: float = option(1.0, "weight of the supcon term (replaces w * L_mlm)")
    supcon_temperature: float = option(0.1, "temperature of the supervised contrastive loss")
    supcon_max_spans: int = option(1024, "at most this many spans per step in the supcon loss: all entity spans first, then seeded O spans (0 = all)")
    denoise: bool = option(True, "global-local denoising of the pseudo labels (false = ablation w/o denoising: labels never change)")

    def validate(self) -> None:
        self.validate_common()
        if self.aux_task not in AUX_TASKS:
            raise ValueError(f"--aux-task must be one of {AUX_TASKS}, got {self.aux_task!r}")
        if self.num_epochs < 1:
            raise ValueError("--num-epochs must be >= 1")
        if self.supcon_temperature <= 0:
            raise ValueError("--supcon-temperature must be > 0")

    @property
    def projection_trained(self) -> bool:
        """supcon trains the projection; otherwise as configured."""
        return self.train_projection or self.aux_task == "supcon"

    @property
    def aux_weight(self) -> float:
        return {"mlm": self.mlm_weight, "supcon": self.supcon_weight, "none": 0.0}[self.aux_task]


# -- batches -----------------------------------------------------------------------------------


class CycleBatchSampler(Sampler[list[int]]):
    """`count` batches of the endless sequence pass 0, pass 1, ... of `sampler` (pass p ordered by
    `sampler.set_epoch(p)`), starting at batch `start` of that sequence. Batch g of the sequence
    depends only on the sampler's seed and g, so an epoch's source batches need no saved state."""

    def __init__(self, sampler: LengthBucketBatchSampler, start: int, count: int):
        self.sampler, self.start, self.count = sampler, start, count
        self.per_pass = len(sampler)
        if self.per_pass < 1:
            raise ValueError("no batches to cycle through")

    def __iter__(self) -> Iterator[list[int]]:
        produced, position = 0, self.start
        while produced < self.count:
            pass_index, offset = divmod(position, self.per_pass)
            self.sampler.set_epoch(pass_index)
            for batch in self.sampler.batches()[offset:]:
                if produced == self.count:
                    return
                yield batch
                produced += 1
                position += 1

    def __len__(self) -> int:
        return self.count


def supcon_subsample(labels: torch.Tensor, max_spans: int, generator: torch.Generator) -> torch.Tensor | None:
    """Indices (sorted) of at most `max_spans` spans for the supcon loss, or None to keep all:
    every entity span (a random subset if they alone exceed the cap), then random O spans."""
    n = labels.numel()
    if max_spans <= 0 or n <= max_spans:
        return None
    cpu = labels.detach().cpu()
    entity = (cpu > 0).nonzero().squeeze(1)
    o_spans = (cpu == 0).nonzero().squeeze(1)
    if entity.numel() >= max_spans:
        keep = entity[torch.randperm(entity.numel(), generator=generator)[:max_spans]]
    else:
        keep = torch.cat([entity, o_spans[torch.randperm(o_spans.numel(), generator=generator)[: max_spans - entity.numel()]]])
    return keep.sort().values.to(labels.device)


# -- inputs ------------------------------------------------------------------------------------


def probability_columns(classes: Sequence[str]) -> list[str]:
    return [f"p_{c}" for c in classes]


def labels_digest(probs: np.ndarray) -> str:
    """sha256 of a label store (float32, C order): ties a state to the labels its epoch wrote."""
    return hashlib.sha256(np.ascontiguousarray(probs, dtype=np.float32).tobytes()).hexdigest()


def read_pseudo_labels(path: Path, spans: pd.DataFrame, classes: Sequence[str], spans_path: Path) -> tuple[np.ndarray, dict]:
    """The soft pseudo labels [n_spans, n_classes] (float32) of a predictions Parquet, validated
    against the target spans: same rows, same order, the classes' columns, rows summing to 1."""
    try:
        names = pq.read_schema(path).names
    except Exception as err:  # noqa: BLE001 - OSError, ArrowInvalid, ... depending on what the file is
        raise GlodeInputError(path, f"cannot read as Parquet: {err}") from None
    columns = probability_columns(classes)
    missing = [c for c in ["sent_id", "start", "end", *columns] if c not in names]
    if missing:
        raise GlodeInputError(path, f"not pseudo labels for classes {list(classes)}: missing columns {missing}")
    meta = read_parquet_metadata(path)
    if meta.get("classes") is not None and list(meta["classes"]) != list(classes):
        raise GlodeInputError(path, f"pseudo labels for classes {meta['classes']}, but training uses {list(classes)}")
    frame = pd.read_parquet(path, columns=["sent_id", "start", "end", *columns])
    if len(frame) != len(spans):
        raise GlodeInputError(path, f"{len(frame)} label rows but {len(spans)} spans in {spans_path}: labels of another spans file?")
    for key in ("sent_id", "start", "end"):
        differs = frame[key].to_numpy(dtype=np.int64) != spans[key].to_numpy(dtype=np.int64)
        if differs.any():
            row = int(np.flatnonzero(differs)[0])
            raise GlodeInputError(
                path,
                f"row {row}: span ({frame['sent_id'].iat[row]}, {frame['start'].iat[row]}, {frame['end'].iat[row]}) but {spans_path} "
                f"has ({spans['sent_id'].iat[row]}, {spans['start'].iat[row]}, {spans['end'].iat[row]}) there; the labels must "
                "list the spans file's rows in its order",
            )
    probs = np.ascontiguousarray(frame[columns].to_numpy(dtype=np.float32))
    bad = ~np.isfinite(probs).all(axis=1) | (probs < 0).any(axis=1) | (np.abs(probs.sum(axis=1, dtype=np.float64) - 1.0) > 1e-3)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise GlodeInputError(path, f"row {row}: probabilities {probs[row].tolist()} are not a distribution")
    return probs, meta


def _json_safe(value: Any) -> Any:
    """inf/nan (an unused class's threshold) -> None, so metadata and state stay strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# -- state -------------------------------------------------------------------------------------


def read_state(state_in: Path, epoch: int, opts: TargetTrainingOptions, denoise_config: DenoiseConfig, classes: list[str], labels_sha: str, labels_in: Path) -> dict:
    """trainer.json of the state epoch E-1 wrote, after checking it belongs to this run."""
    missing = [name for name in STATE_FILES if not (state_in / name).exists()]
    if missing:
        raise GlodeInputError(state_in, f"not a train-target state directory: missing {missing}")
    trainer = read_json(state_in / "trainer.json")
    if trainer["epoch"] != epoch - 1:
        raise GlodeInputError(state_in, f"is the state after epoch {trainer['epoch']}, but epoch {epoch} needs epoch {epoch - 1}'s")
    saved, current = trainer["options"], _json_safe(dataclasses.asdict(opts))
    differs = sorted(k for k in current if k not in _RESUMABLE_DIFFERENCES and saved.get(k) != current[k])
    if differs:
        raise GlodeInputError(state_in, "options differ from the run's earlier epochs: " + ", ".join(f"{k} {saved.get(k)!r} -> {current[k]!r}" for k in differs))
    if trainer["denoise_config"] != _json_safe(dataclasses.asdict(denoise_config)):
        raise GlodeInputError(state_in, f"denoise config differs from the run's earlier epochs: {trainer['denoise_config']} -> {dataclasses.asdict(denoise_config)}")
    if trainer["classes"] != classes:
        raise GlodeInputError(state_in, f"classes {trainer['classes']} differ from {classes}")
    if trainer["labels_sha256"] != labels_sha:
        raise GlodeInputError(labels_in, f"are not the labels epoch {epoch - 1} wrote (their sha256 differs from {state_in}/trainer.json)")
    return trainer


def save_model_dir(out: Path, model: SpanModel, tokenizer, summary: dict) -> None:
    """A complete Hugging Face model directory: weights, config, tokenizer, glode_training.json."""
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    write_json(summary, out / "glode_training.json")


def save_state(out: Path, model: SpanModel, tokenizer, optimizer, scheduler, denoiser: Denoiser | None, generators: dict, trainer: dict, summary: dict) -> None:
    from safetensors.torch import save_file

    with atomic_dir(out) as tmp:
        save_model_dir(tmp / "model", model, tokenizer, summary)  # complete: the workflow copies it as the final model
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
        if denoiser is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in denoiser.state_dict().items()}, str(tmp / "denoiser.safetensors"))
        torch.save(capture_rng_state(generators), tmp / "rng.pt")
        write_json(trainer, tmp / "trainer.json")


# -- the epoch ---------------------------------------------------------------------------------


def train_target_epoch(
    *,
    epoch: int,
    source_sentences: Path,
    source_spans: Path,
    target_sentences: Path,
    target_spans: Path,
    labels_in: Path,
    backbone: str,
    entity_types: list[str] | None,
    state_in: Path | None,
    state_out: Path,
    labels_out: Path,
    model_out: Path | None,
    train_log: Path | None,
    opts: TargetTrainingOptions,
    denoise_config: DenoiseConfig,
    progress: bool | None = None,
    init_model: Path | None = None,
) -> dict:
    """Run target epoch `epoch` (0-based) and write its outputs; returns a summary dict."""
    from tqdm.auto import tqdm

    opts.validate()
    if not 0 <= epoch < opts.num_epochs:
        raise ValueError(f"--epoch must be in 0..{opts.num_epochs - 1} (--num-epochs {opts.num_epochs}), got {epoch}")
    if epoch > 0 and state_in is None:
        raise ValueError(f"epoch {epoch} resumes from epoch {epoch - 1}'s state: --state-in is required")
    if epoch == 0 and state_in is not None:
        raise ValueError("epoch 0 starts fresh from --backbone; --state-in is only for epochs > 0")
    if epoch > 0 and init_model is not None:
        raise ValueError("--init-model is only for epoch 0; later epochs resume from --state-in")
    started = time.perf_counter()
    seed_everything(opts.seed)
    device = select_device(opts.device)
    log.info("device: %s", describe_device(device))

    # -- inputs, all validated before anything is trained or written
    src_meta = read_parquet_metadata(source_sentences)
    entity_types = list(entity_types or src_meta.get("entity_types") or [])
    if not entity_types:
        raise GlodeInputError(source_sentences, "no entity types given (--entity-types) and none in the file's metadata")
    classes = class_names(entity_types)
    src = load_sentences(source_sentences)
    spans_s = read_spans(source_spans)
    if "label" not in spans_s.columns or spans_s["label"].isna().any():
        raise GlodeInputError(source_spans, "source spans must carry gold labels (found none or null labels)")
    tgt = load_sentences(target_sentences)
    if "tags" in tgt.columns:  # a labeled file given as target data: its tags are never used
        log.warning("%s has tags; target training ignores them", target_sentences)
        tgt = tgt.drop(columns=["tags"])
    span_columns = [c for c in _TARGET_SPAN_COLUMNS if c in pq.read_schema(target_spans).names]
    spans_t = read_spans(target_spans, columns=span_columns)
    if len(src) == 0 or len(spans_s) == 0:
        raise GlodeInputError(source_sentences, "no source sentences or spans to train on")
    if len(tgt) == 0 or len(spans_t) == 0:
        raise GlodeInputError(target_sentences, "no target sentences or spans to train on")
    labels, labels_meta = read_pseudo_labels(labels_in, spans_t, classes, target_spans)
    if epoch == 0 and labels_meta.get("epoch") is not None:
        log.warning("%s are epoch %s's refined labels; epoch 0 normally starts from a source model's initial labels", labels_in, labels_meta["epoch"])
    if epoch > 0 and labels_meta.get("epoch") is not None and labels_meta["epoch"] != epoch - 1:
        raise GlodeInputError(labels_in, f"are the labels of epoch {labels_meta['epoch']}, but epoch {epoch} needs epoch {epoch - 1}'s")
    labels_sha_in = labels_digest(labels)
    trainer_in = read_state(state_in, epoch, opts, denoise_config, classes, labels_sha_in, labels_in) if epoch > 0 else None
    initial_argmax = labels.argmax(axis=1)

    tokenizer = load_tokenizer(backbone)
    source_items = build_items(src, tokenizer, opts.max_seq_len, spans_s, classes, max_span_len=opts.max_span_len, spans_path=source_spans)
    target_items = build_items(tgt, tokenizer, opts.max_seq_len, spans_t, classes=None, max_span_len=opts.max_span_len, spans_path=target_spans)
    log.info("epoch %d/%d: source %d sentences, %d spans; target %d sentences, %d spans; classes %s; aux %s; denoise %s",
             epoch, opts.num_epochs, len(source_items), len(spans_s), len(target_items), len(spans_t), classes, opts.aux_task, opts.denoise)

    # -- model, optimiser, schedule (fresh at epoch 0, else epoch E-1's)
    if epoch == 0 and init_model is not None:
        # Demo scale only: the paper trains the target model from the pretrained encoder.
        model = SpanModel.from_pretrained(str(init_model))
        if list(model.classes) != list(classes):
            raise GlodeInputError(init_model, f"has classes {model.classes}, the data {classes}")
        model.config.train_projection = opts.projection_trained
        model.projection.requires_grad_(opts.projection_trained)
        log.info("epoch 0 starts from the span model %s instead of the pretrained encoder", init_model)
    elif epoch == 0:
        model = SpanModel.from_backbone(backbone, classes, encoder_layers=opts.encoder_layers, dropout=opts.dropout, max_span_len=opts.max_span_len, train_projection=opts.projection_trained)
    else:
        model = SpanModel.from_pretrained(str(state_in / "model"))
    model.freeze_encoder_parts(opts.freeze_word_embeddings, opts.train_top_layers)
    model.to(device).train()
    optimizer, params = build_optimizer(model, opts.lr, (opts.adam_beta1, opts.adam_beta2), opts.adam_eps, opts.weight_decay, opts.head_lr)
    log.info("parameters: %d trainable of %d (projection trained: %s)", sum(p.numel() for p in params), sum(p.numel() for p in model.parameters()), opts.projection_trained)

    pad_id = tokenizer.pad_token_id
    tgt_loader, tgt_sampler = make_loader(target_items, opts.batch_size, pad_id, shuffle=True, seed=opts.seed * 1000 + _STREAM_TARGET_ORDER, num_workers=opts.num_workers)
    tgt_sampler.set_epoch(epoch)
    steps_per_epoch = len(tgt_sampler)
    src_sampler = LengthBucketBatchSampler([len(it["input_ids"]) for it in source_items], opts.batch_size, shuffle=True, seed=opts.seed * 1000 + _STREAM_SOURCE_ORDER)
    src_loader = DataLoader(source_items, batch_sampler=CycleBatchSampler(src_sampler, epoch * steps_per_epoch, steps_per_epoch),
                            collate_fn=SpanCollator(pad_id, model.config.subword_width_buckets), num_workers=opts.num_workers)
    updates_per_epoch = math.ceil(steps_per_epoch / opts.grad_accumulation)
    total_updates = updates_per_epoch * opts.num_epochs
    scheduler = build_scheduler(optimizer, opts.warmup_steps, total_updates)

    denoiser = Denoiser(len(classes), model.config.projection_dim, denoise_config, device) if opts.denoise else None
    generators = {name: make_generator(opts.seed, stream) for name, stream in (("masks", _STREAM_MASKS), ("supcon", _STREAM_SUPCON), ("bank", _STREAM_BANK))}
    step = 0
    if trainer_in is not None:
        if trainer_in["steps_per_epoch"] != steps_per_epoch:
            raise GlodeInputError(state_in, f"{trainer_in['steps_per_epoch']} steps per epoch in the state, {steps_per_epoch} now: other target data?")
        saved = torch.load(state_in / "optimizer.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])  # after building the scheduler: it must not reset initial_lr
        scheduler.load_state_dict(saved["scheduler"])
        if denoiser is not None:
            from safetensors.torch import load_file

            denoiser.load_state_dict(load_file(str(state_in / "denoiser.safetensors")))
        restore_rng_state(torch.load(state_in / "rng.pt", weights_only=True), generators)
        step = int(trainer_in["step"])
    if step != epoch * updates_per_epoch:
        raise GlodeInputError(state_in or labels_in, f"state is at update {step}, expected {epoch * updates_per_epoch}")

    mask_token_id, specials = tokenizer.mask_token_id, special_token_ids(tokenizer)
    need_projections = denoiser is not None or opts.aux_task == "supcon"
    collected: dict[str, list[torch.Tensor]] = {"z_t": [], "y_t": [], "local_t": [], "z_s": [], "y_s": []}
    local_complete = True
    counts = {"changed": 0, "updated": 0, "changed_to": [0] * len(classes), "ready": False, "beta": None}

    if progress is None:
        progress = sys.stderr.isatty()
    bar = tqdm(total=updates_per_epoch, desc=f"train-target epoch {epoch}", unit="update", disable=not progress)
    last: dict = {}
    denoise_seconds = 0.0
    with contextlib.ExitStack() as outputs:
        # The log goes to a temporary file renamed into place together with the other outputs, at the end.
        log_file = outputs.enter_context(open(outputs.enter_context(atomic_path(train_log)), "w", encoding="utf-8")) if train_log else None
        group = UpdateGroup(_LOSS_KEYS)
        for i, (target_batch, source_batch) in enumerate(zip(tgt_loader, src_loader)):
            group_size = accumulation_group_size(i, steps_per_epoch, opts.grad_accumulation)
            sb, tb = move_batch(source_batch, device), move_batch(target_batch, device)
            with autocast(device):
                out_s = model(**sb, return_projections=need_projections)
                out_t = model(**tb, return_projections=need_projections)
            loss_src = span_cross_entropy(out_s.logits, sb["labels"], sb["span_sentence"], sb["input_ids"].shape[0])  # Eq. 1

            rows = target_batch["span_rows"].numpy()
            p_t = torch.from_numpy(labels[rows]).to(device)
            p_new = p_t
            if denoiser is not None:
                tick = time.perf_counter()
                z_s, z_t = out_s.projections.detach(), out_t.projections.detach()
                denoiser.observe(torch.cat([z_s, z_t]), torch.cat([sb["labels"], p_t.argmax(1)]))  # Eq. 6
                p_new, info = denoiser.refine(z_t, p_t, epoch, opts.num_epochs)  # Eqs. 8-11
                labels[rows] = p_new.float().cpu().numpy()
                y_t = p_new.argmax(1)
                collected["z_t"].append(z_t.float().cpu())
                collected["y_t"].append(y_t.cpu())
                collected["z_s"].append(z_s.float().cpu())
                collected["y_s"].append(sb["labels"].cpu())
                if info["local_scores"] is not None:
                    collected["local_t"].append(info["local_scores"].float().cpu())
                elif len(rows):
                    local_complete = False
                counts["changed"] += info["changed"]
                counts["updated"] += info["updated"]
                counts["changed_to"] = [a + b for a, b in zip(counts["changed_to"], info["changed_to"])]
                counts["ready"] = counts["ready"] or info["ready"]
                counts["beta"] = info["beta"] if info["beta"] is not None else counts["beta"]
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                denoise_seconds += time.perf_counter() - tick
            loss_tgt = soft_span_cross_entropy(out_t.logits, p_new.detach(), tb["span_sentence"], tb["input_ids"].shape[0])  # Eq. 4

            loss_aux = torch.zeros((), device=device)
            if opts.aux_task == "mlm":
                loss_aux = masked_lm_step(model, target_batch, mask_token_id, specials, opts.mask_rate, opts.mlm_normalisation, generators["masks"], device)  # Eq. 2
            elif opts.aux_task == "supcon":
                z = torch.cat([out_s.projections, out_t.projections])
                y = torch.cat([sb["labels"], p_new.argmax(1)])
                keep = supcon_subsample(y, opts.supcon_max_spans, generators["supcon"])
                if keep is not None:
                    z, y = z[keep], y[keep]
                loss_aux = supervised_contrastive_loss(z, y, opts.supcon_temperature)
            loss = target_objective(loss_src, loss_tgt, loss_aux, opts.aux_weight)
            (loss / group_size).backward()
            group.add({"loss_src": loss_src, "loss_tgt": loss_tgt, "loss_aux": loss_aux, "loss_total": loss}, group_size, tb["input_ids"].shape[0])
            if group.batches < group_size:
                continue
            lr = optimizer_update(optimizer, scheduler, params, opts.grad_clip)
            step += 1
            last = {
                "step": step,
                "epoch": epoch,
                "loss_src": group.sums["loss_src"],
                "loss_tgt": group.sums["loss_tgt"],
                "loss_aux": group.sums["loss_aux"] if opts.aux_task != "none" else None,
                "loss_mlm": group.sums["loss_aux"] if opts.aux_task == "mlm" else None,
                "loss_total": group.sums["loss_total"],
                "lr": lr,
                "sentences_per_s": group.sentences_per_s(),
                "labels_changed": counts["changed"],
                "labels_updated": counts["updated"],
                "denoise_s": denoise_seconds,
            }
            denoise_seconds = 0.0
            if log_file is not None:
                log_file.write(json.dumps(last) + "\n")
            bar.update(1)
            bar.set_postfix(loss=f"{group.sums['loss_total']:.4f}", changed=counts["changed"])
            group = UpdateGroup(_LOSS_KEYS)
        bar.close()

        end_info: dict = {}
        if denoiser is not None:
            z_t_all = torch.cat(collected["z_t"]).to(device)
            local = torch.cat(collected["local_t"]).to(device) if local_complete and collected["local_t"] else None
            end_info = denoiser.end_epoch(
                z_t_all, torch.cat(collected["y_t"]).to(device), torch.cat(collected["z_s"]).to(device), torch.cat(collected["y_s"]).to(device),
                generator=generators["bank"], target_local_scores=local,
            )
            del collected, z_t_all, local

        # -- outputs
        changed = int((labels.argmax(axis=1) != initial_argmax).sum())
        labels_sha_out = labels_digest(labels)
        cfg = _json_safe(dataclasses.asdict(denoise_config))
        frame = predictions_frame(spans_t, tgt, labels, classes)
        frame["epoch"] = np.full(len(frame), epoch, dtype=np.int16)
        spans_meta = read_parquet_metadata(target_spans)
        meta = {k: spans_meta.get(k) for k in ("dataset", "lang", "split") if k in spans_meta}
        meta.update(
            classes=classes,
            model=str(model_out) if model_out else str(state_out / "model"),
            pruned=bool(labels_meta.get("pruned", False)),
            spans_path=str(target_spans),
            sentences_path=str(target_sentences),
            labels_in=str(labels_in),
            epoch=epoch,
            num_epochs=opts.num_epochs,
            seed=opts.seed,
            aux_task=opts.aux_task,
            denoise=opts.denoise,
            denoise_config=cfg,
            beta=counts["beta"],
            denoise_ready=counts["ready"],
            labels_changed=changed,
            labels_updated=counts["updated"],
            changed_to=dict(zip(classes, counts["changed_to"])),
            denoise_end_epoch=_json_safe(end_info),
        )
        trainer = {
            "epoch": epoch,
            "num_epochs": opts.num_epochs,
            "step": step,
            "steps_per_epoch": steps_per_epoch,
            "updates_per_epoch": updates_per_epoch,
            "total_updates": total_updates,
            "classes": classes,
            "options": _json_safe(dataclasses.asdict(opts)),
            "denoise_config": cfg,
            "labels_sha256": labels_sha_out,
            "labels_changed": changed,
            "target_spans": int(len(spans_t)),
            "inputs": {"source_sentences": str(source_sentences), "source_spans": str(source_spans), "target_sentences": str(target_sentences),
                       "target_spans": str(target_spans), "labels_in": str(labels_in), "backbone": str(backbone),
                       "state_in": str(state_in) if state_in else None},
        }
        summary = {
            **trainer,
            "last": last,
            "denoise_end_epoch": _json_safe(end_info),
            "seconds": time.perf_counter() - started,
            "device": describe_device(device),
            "torch": torch.__version__,
        }
        write_parquet(frame, labels_out, metadata=meta)
        save_state(state_out, model, tokenizer, optimizer, scheduler, denoiser, generators, trainer, summary)
        if model_out is not None:
            with atomic_dir(model_out) as tmp:
                save_model_dir(tmp, model, tokenizer, summary)
    log.info("epoch %d/%d done: update %d, %d of %d pseudo labels changed (argmax), %.0f s", epoch, opts.num_epochs, step, changed, len(labels), summary["seconds"])
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glode train-target", description=__doc__.splitlines()[0])
    parser.add_argument("--epoch", required=True, type=int, help="the epoch to run, 0-based (< --num-epochs)")
    parser.add_argument("--source-sentences", required=True, type=Path, help="labeled source train sentences Parquet")
    parser.add_argument("--source-spans", required=True, type=Path, help="its spans Parquet (with gold labels)")
    parser.add_argument("--target-sentences", required=True, type=Path, help="unlabeled target train sentences Parquet")
    parser.add_argument("--target-spans", required=True, type=Path, help="its spans Parquet (labels null; never read)")
    parser.add_argument("--labels-in", required=True, type=Path, help="current pseudo labels: initial (`glode pseudo-label`) for epoch 0, else epoch E-1's --labels-out")
    parser.add_argument("--backbone", required=True, help="Hugging Face encoder name or directory (weights for epoch 0; the tokenizer always)")
    parser.add_argument("--entity-types", nargs="+", help="label set without O, in class order (default: the source file's metadata)")
    parser.add_argument("--state-in", type=Path, help="epoch E-1's --state-out (required for epoch > 0)")
    parser.add_argument(
        "--init-model", type=Path,
        help="epoch 0 only: start from this span model (e.g. the source model) instead of the pretrained --backbone; "
        "the paper starts from the backbone; useful at demo scale, where a few updates cannot train a model from scratch",
    )
    parser.add_argument("--state-out", required=True, type=Path, help="state directory to write (the next epoch's --state-in)")
    parser.add_argument("--labels-out", required=True, type=Path, help="refined pseudo labels Parquet to write")
    parser.add_argument("--model-out", type=Path, help="also write the model (with tokenizer) as a Hugging Face directory")
    parser.add_argument("--train-log", type=Path, help="JSONL training log to write (one line per optimizer update)")
    parser.add_argument("--log", type=Path, help="also log to this file")
    add_options(parser, TargetTrainingOptions, "training options")
    add_options(parser, DenoiseConfig, "denoising options (glode.denoise.DenoiseConfig)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    train_target_epoch(
        epoch=args.epoch,
        source_sentences=args.source_sentences,
        source_spans=args.source_spans,
        target_sentences=args.target_sentences,
        target_spans=args.target_spans,
        labels_in=args.labels_in,
        backbone=args.backbone,
        entity_types=args.entity_types,
        state_in=args.state_in,
        state_out=args.state_out,
        labels_out=args.labels_out,
        model_out=args.model_out,
        train_log=args.train_log,
        opts=options_from_args(TargetTrainingOptions, args),
        denoise_config=options_from_args(DenoiseConfig, args),
        init_model=args.init_model,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
