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

The state directory (`--state-out`, the next epoch's `--state-in`) and its checks: glode.target_state.

Outputs: --labels-out (the refined pseudo labels: the predictions table of docs/data-formats.md plus
an `epoch` int16 column; metadata: epoch, denoise options (key `denoise_config`), labels changed/updated, thresholds and
bank size), --state-out, --model-out (optional: the model HF-style with the tokenizer and
glode_training.json, as `train-source` writes it; give it on the last epoch), --train-log (JSON
lines per update: step, epoch, loss_src, loss_tgt, loss_aux, loss_mlm (= loss_aux for `mlm`,
else null), loss_total, lr, sentences_per_s (target sentences), labels_changed and labels_updated
so far this epoch, denoise_s (seconds spent in the denoiser during the update)).

The variant: `--variant NAME` (the workflow passes its `{variant}` wildcard: glode,
wo_denoising, glode_authors, ...) is recorded as `variant` in trainer.json and the model's
glode_training.json, and names the model on its card (system `target-NAME`). Without the flag,
a later epoch keeps the variant its previous epoch recorded, and otherwise the variant is read
from the output paths when they follow the workflow's layout
(.../target/{dataset}/{lang}/{variant}/seed{N}/...: --final-model, --model-out, --state-out);
failing that it is null and the card says the variant is unknown.

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
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Sampler

from glode.batching import LengthBucketBatchSampler, SpanCollator, build_items, make_loader, move_batch, read_spans
from glode.data import load_sentences
from glode.denoise import NO_DIRECTIONS, DenoiseOptions, Denoiser
from glode.device import autocast, describe_device, seed_everything, select_device
from glode.io import GlodeInputError, atomic_dir, atomic_path, read_parquet_metadata, setup_logging, write_parquet
from glode.model import SpanModel, load_tokenizer
from glode.health import HealthLimits, entity_mass, epoch_health
from glode.methods import DEFAULT_METHOD, METHOD_TEXT, METHODS, method_deviations, method_keys
from glode.objectives import LOSS_AVERAGINGS, TARGET_LOSS_INPUTS, TargetLossForm, supervised_contrastive_loss, target_objective
from glode.options import add_options, option, options_from_args
from glode.pseudo_label import overlap_losers, predictions_frame, prune_to_authors_form
from glode.spans import SpanSettings, read_span_settings, sentence_tokenisation
from glode.target_state import json_safe, labels_digest, read_trainer, restore_state, save_state
from glode.textsplit import splitter_record
from glode.tokenizer import special_token_ids
from glode.training import (
    CorpusVocabulary,
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

AUX_TASKS = ("mlm", "supcon", "none")
# The run's random streams (glode.training.sampler_seed, stream_generator).
_STREAM_SOURCE_ORDER, _STREAM_TARGET_ORDER, _STREAM_MASKS, _STREAM_SUPCON, _STREAM_BANK = 0, 1, 2, 3, 4
_LOSS_KEYS = ("loss_src", "loss_tgt", "loss_aux", "loss_total")
# The target spans' columns the stage reads: never `label` (the unlabeled split has none to read).
_TARGET_SPAN_COLUMNS = ("sent_id", "start", "end", "width", "morph")
# A variant's name, as the workflow's `{variant}` wildcard allows it (workflow/rules/target.smk).
VARIANT_NAME = re.compile(r"[A-Za-z0-9_]+")
_SEED_DIR = re.compile(r"seed\d+")


@dataclass
class TargetTrainingOptions(TrainingOptions):
    num_epochs: int = option(8, "target epochs of the whole run (paper: 8, 6 for zh; authors' code: 5); sets the LR schedule and beta", minimum=1)
    aux_task: str = option("mlm", "auxiliary term of Eq. 5: mlm (GLoDe), supcon (Table 4's GLoDe_agnostic), none (ablation w/o mlm)", choices=AUX_TASKS)
    supcon_weight: float = option(1.0, "weight of the supcon term (replaces w * L_mlm)", minimum=0)
    supcon_temperature: float = option(0.1, "temperature of the supervised contrastive loss", above=0)
    supcon_max_spans: int = option(1024, "at most this many spans per step in the supcon loss: all entity spans first, then seeded O spans (0 = all)", minimum=0)
    denoise: bool = option(True, "global-local denoising of the pseudo labels (false = ablation w/o denoising: labels never change)")
    method: str = option("paper", "the behaviour preset these options started from (glode.methods): " + ", ".join(f"{name} ({text})" for name, text in METHOD_TEXT.items()) + "; recorded with the run", choices=tuple(METHODS))
    target_loss_input: str = option("logits", "L_tgt on the span logits (paper Eq. 4) or on their softmax probabilities (authors' code, train_tgt_model.py:289, 415, 693: bounded)", choices=TARGET_LOSS_INPUTS)
    loss_averaging: str = option("sentence", "L_src and L_tgt of the target stage: mean per sentence then over sentences (paper) or one flat mean over the batch's spans (authors' code)", choices=LOSS_AVERAGINGS)
    prune_initial_labels: bool = option(False, "epoch 0: spans predicted O and entity spans losing overlap resolution become one-hot O (authors' code, generate_pseudo_labels.py:291)")
    prune_overlaps_in_loss: bool = option(False, "each step: pseudo entities losing overlap resolution are trained as one-hot O (authors' --postprocess_pseudo, train_tgt_model.py:683-697)")
    health_max_loss_climb: float = option(3.0, "run health: warn when the target loss's last tenth of an epoch over its first exceeds this (0 = off)", minimum=0)
    health_max_mass_growth: float = option(1.5, "run health: warn when the pseudo labels' entity mass grows more than this within an epoch (0 = off)", minimum=0)
    health_stop: bool = option(False, "run health: stop the run (no outputs for the epoch) instead of warning when a limit is passed")

    def validate(self) -> None:
        self.validate_common()

    @property
    def projection_trained(self) -> bool:
        """supcon trains the projection; otherwise as configured."""
        return self.train_projection or self.aux_task == "supcon"

    @property
    def aux_weight(self) -> float:
        return {"mlm": self.mlm_weight, "supcon": self.supcon_weight, "none": 0.0}[self.aux_task]

    @property
    def loss_form(self) -> TargetLossForm:
        return TargetLossForm(self.target_loss_input, self.loss_averaging)

    @property
    def health_limits(self) -> HealthLimits:
        return HealthLimits(self.health_max_loss_climb, self.health_max_mass_growth)


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


@dataclass
class TargetFiles:
    """The named inputs and outputs of one epoch (the CLI's paths)."""

    source_sentences: Path
    source_spans: Path
    target_sentences: Path
    target_spans: Path
    labels_in: Path
    backbone: str
    state_out: Path
    labels_out: Path
    state_in: Path | None = None
    init_model: Path | None = None
    model_out: Path | None = None
    final_model: Path | None = None  # where the run's last model will be kept (the labels' metadata names it)
    train_log: Path | None = None
    mlm_vocab: Path | None = None
    source_frozen_states: Path | None = None
    target_frozen_states: Path | None = None

    def check_epoch(self, epoch: int, num_epochs: int) -> None:
        """Epoch 0 starts fresh (from the backbone or --init-model), later epochs from --state-in."""
        if not 0 <= epoch < num_epochs:
            raise ValueError(f"--epoch must be in 0..{num_epochs - 1} (--num-epochs {num_epochs}), got {epoch}")
        if epoch > 0 and self.state_in is None:
            raise ValueError(f"epoch {epoch} resumes from epoch {epoch - 1}'s state: --state-in is required")
        if epoch == 0 and self.state_in is not None:
            raise ValueError("epoch 0 starts fresh from --backbone; --state-in is only for epochs > 0")
        if epoch > 0 and self.init_model is not None:
            raise ValueError("--init-model is only for epoch 0; later epochs resume from --state-in")


@dataclass
class TargetInputs:
    """Everything an epoch reads, validated: sentences, spans, the current pseudo labels (the
    in-memory label store that refinement rewrites) and, after epoch 0, the previous epoch's trainer.json."""

    classes: list[str]
    span_settings: SpanSettings
    target: pd.DataFrame
    target_spans: pd.DataFrame
    labels: np.ndarray
    labels_meta: dict
    trainer_in: dict | None
    tokenizer: object
    source_items: list[dict]
    target_items: list[dict]


def read_target_sentences(files: TargetFiles) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(source sentences, source spans with gold labels, target sentences, target spans without labels)."""
    src = load_sentences(files.source_sentences)
    spans_s = read_spans(files.source_spans)
    if "label" not in spans_s.columns or spans_s["label"].isna().any():
        raise GlodeInputError(files.source_spans, "source spans must carry gold labels (found none or null labels)")
    tgt = load_sentences(files.target_sentences)
    if "tags" in tgt.columns:  # a labeled file given as target data: its tags are never used
        log.warning("%s has tags; target training ignores them", files.target_sentences)
        tgt = tgt.drop(columns=["tags"])
    span_columns = [c for c in _TARGET_SPAN_COLUMNS if c in pq.read_schema(files.target_spans).names]
    spans_t = read_spans(files.target_spans, columns=span_columns)
    if len(src) == 0 or len(spans_s) == 0:
        raise GlodeInputError(files.source_sentences, "no source sentences or spans to train on")
    if len(tgt) == 0 or len(spans_t) == 0:
        raise GlodeInputError(files.target_sentences, "no target sentences or spans to train on")
    return src, spans_s, tgt, spans_t


def load_target_inputs(files: TargetFiles, epoch: int, opts: TargetTrainingOptions, denoise_options: DenoiseOptions, entity_types: list[str] | None) -> TargetInputs:
    """Read and check every input before anything is trained or written."""
    classes = resolve_classes(files.source_sentences, entity_types)
    span_settings = read_span_settings(files.source_spans, files.target_spans)
    src, spans_s, tgt, spans_t = read_target_sentences(files)
    labels, labels_meta = read_pseudo_labels(files.labels_in, spans_t, classes, files.target_spans)
    if epoch == 0 and opts.prune_initial_labels and not labels_meta.get("pruned", False):
        labels = prune_to_authors_form(spans_t, labels, classes)  # the authors' initial labels: one-hot O outside kept entities
        labels_meta = {**labels_meta, "pruned": True}
    if epoch == 0 and labels_meta.get("epoch") is not None:
        log.warning("%s are epoch %s's refined labels; epoch 0 normally starts from a source model's initial labels", files.labels_in, labels_meta["epoch"])
    if epoch > 0 and labels_meta.get("epoch") is not None and labels_meta["epoch"] != epoch - 1:
        raise GlodeInputError(files.labels_in, f"are the labels of epoch {labels_meta['epoch']}, but epoch {epoch} needs epoch {epoch - 1}'s")
    trainer_in = None
    if epoch > 0:
        options, config = json_safe(dataclasses.asdict(opts)), json_safe(dataclasses.asdict(denoise_options))
        trainer_in = read_trainer(files.state_in, epoch, options, config, classes, labels_digest(labels), files.labels_in)

    tokenizer = load_tokenizer(files.backbone)
    window, width = span_settings.max_seq_len, span_settings.max_span_len
    source_items = build_items(src, tokenizer, window, spans_s, classes, max_span_len=width, spans_path=files.source_spans)
    target_items = build_items(tgt, tokenizer, window, spans_t, classes=None, max_span_len=width, spans_path=files.target_spans)
    log.info("epoch %d/%d: source %d sentences, %d spans; target %d sentences, %d spans; classes %s; aux %s; denoise %s",
             epoch, opts.num_epochs, len(source_items), len(spans_s), len(target_items), len(spans_t), classes, opts.aux_task, opts.denoise)
    return TargetInputs(classes, span_settings, tgt, spans_t, labels, labels_meta, trainer_in, tokenizer, source_items, target_items)


# -- model, optimizer, denoiser ------------------------------------------------------------------


@dataclass
class TargetRun:
    """What an epoch trains and carries over: model, optimizer, schedule, denoiser, the run's
    named random generators, the epoch's batches, and the update counter."""

    model: SpanModel
    optimizer: torch.optim.Optimizer
    params: list[torch.nn.Parameter]
    scheduler: object
    denoiser: Denoiser | None
    generators: dict[str, torch.Generator]
    vocabulary: CorpusVocabulary | None
    frozen_depth: int
    target_loader: DataLoader
    source_loader: DataLoader
    steps_per_epoch: int
    updates_per_epoch: int
    step: int
    classes: list[str]
    target_span_keys: tuple[np.ndarray, np.ndarray, np.ndarray]  # (sent_id, start, end) of every target span row


def build_target_run(files: TargetFiles, inputs: TargetInputs, epoch: int, opts: TargetTrainingOptions, denoise_options: DenoiseOptions, device: torch.device) -> TargetRun:
    """Epoch 0: a fresh model (the backbone, or --init-model) and optimizer; later epochs: epoch
    E-1's saved model, optimizer, schedule, denoiser and random states."""
    if epoch == 0 and files.init_model is not None:
        log.info("epoch 0 starts from the span model %s instead of the pretrained encoder", files.init_model)  # demo scale; the paper starts from the encoder
    load_from = files.state_in / "model" if epoch > 0 else files.init_model
    model = build_span_model(opts, inputs.classes, inputs.span_settings, device, backbone=files.backbone, load_from=load_from, train_projection=opts.projection_trained)
    optimizer, params = build_optimizer(model, opts.lr, (opts.adam_beta1, opts.adam_beta2), opts.adam_eps, opts.weight_decay, opts.head_lr)
    log.info("parameters: %d trainable of %d (projection trained: %s)", sum(p.numel() for p in params), sum(p.numel() for p in model.parameters()), opts.projection_trained)
    frozen_depth = frozen_states_for(opts, model, (inputs.source_items, files.source_frozen_states), (inputs.target_items, files.target_frozen_states))

    pad_id = inputs.tokenizer.pad_token_id
    tgt_loader, tgt_sampler = make_loader(inputs.target_items, opts.batch_size, pad_id, shuffle=True, seed=sampler_seed(opts.seed, _STREAM_TARGET_ORDER), num_workers=opts.num_workers)
    tgt_sampler.set_epoch(epoch)
    steps_per_epoch = len(tgt_sampler)
    src_sampler = LengthBucketBatchSampler([len(it["input_ids"]) for it in inputs.source_items], opts.batch_size, shuffle=True, seed=sampler_seed(opts.seed, _STREAM_SOURCE_ORDER))
    src_loader = DataLoader(inputs.source_items, batch_sampler=CycleBatchSampler(src_sampler, epoch * steps_per_epoch, steps_per_epoch),
                            collate_fn=SpanCollator(pad_id, model.config.subword_width_buckets), num_workers=opts.num_workers)
    updates_per_epoch = math.ceil(steps_per_epoch / opts.grad_accumulation)
    scheduler = build_scheduler(optimizer, opts.warmup_steps, updates_per_epoch * opts.num_epochs)

    denoiser = Denoiser(len(inputs.classes), model.config.projection_dim, denoise_options, device) if opts.denoise else None
    generators = {name: stream_generator(opts.seed, stream) for name, stream in (("masks", _STREAM_MASKS), ("supcon", _STREAM_SUPCON), ("bank", _STREAM_BANK))}
    step = 0
    if inputs.trainer_in is not None:
        if inputs.trainer_in["steps_per_epoch"] != steps_per_epoch:
            raise GlodeInputError(files.state_in, f"{inputs.trainer_in['steps_per_epoch']} steps per epoch in the state, {steps_per_epoch} now: other target data?")
        restore_state(files.state_in, optimizer, scheduler, denoiser, generators)
        step = int(inputs.trainer_in["step"])
    if step != epoch * updates_per_epoch:
        raise GlodeInputError(files.state_in or files.labels_in, f"state is at update {step}, expected {epoch * updates_per_epoch}")
    vocabulary = corpus_vocabulary(files.mlm_vocab if opts.aux_task == "mlm" else None, model, device)
    span_keys = tuple(inputs.target_spans[key].to_numpy(dtype=np.int64) for key in ("sent_id", "start", "end"))
    return TargetRun(model, optimizer, params, scheduler, denoiser, generators, vocabulary, frozen_depth, tgt_loader, src_loader, steps_per_epoch,
                     updates_per_epoch, step, inputs.classes, span_keys)


# -- one step ----------------------------------------------------------------------------------


class EpochTally:
    """What an epoch counts and reports: labels changed and updated (and to which class), whether
    the denoiser was ready and its beta, the projections and local scores that `Denoiser.end_epoch`
    needs, seconds spent denoising since the last update, and the per-update log and progress bar."""

    def __init__(self, n_classes: int, update_log: UpdateLog, keep_step_global_scores: bool = False):
        self.changed, self.updated, self.changed_to = 0, 0, [0] * n_classes
        self.directions = dict(NO_DIRECTIONS)
        self.ready, self.beta = False, None
        self.denoise_seconds = 0.0
        self.projections: dict[str, list[torch.Tensor]] = {"z_t": [], "y_t": [], "local_t": [], "global_t": [], "z_s": [], "y_s": []}
        self.local_complete = True
        self.update_log = update_log
        self.keep_step_global_scores = keep_step_global_scores  # only `thresholds: authors` reads them
        self.target_losses: list[float] = []  # per update, for the run-health check
        self.predicted_entities = 0  # target spans the model's training forward passes call entities

    def add_refinement(self, info: dict, z_s: torch.Tensor, y_s: torch.Tensor, z_t: torch.Tensor, y_t: torch.Tensor) -> None:
        """One batch's refinement (`Denoiser.refine`'s info) and the projections behind it; y_t
        the target labels that the thresholds and the bank will use."""
        for key, value in (("z_t", z_t.float()), ("y_t", y_t), ("z_s", z_s.float()), ("y_s", y_s)):
            self.projections[key].append(value.cpu())
        if info["local_scores"] is not None:
            self.projections["local_t"].append(info["local_scores"].float().cpu())
        elif len(y_t):
            self.local_complete = False
        if self.keep_step_global_scores and info["global_scores"] is not None:
            self.projections["global_t"].append(info["global_scores"].float().cpu())
        self.changed += info["changed"]
        self.updated += info["updated"]
        self.changed_to = [a + b for a, b in zip(self.changed_to, info["changed_to"])]
        self.directions = {k: v + info["directions"][k] for k, v in self.directions.items()}
        self.ready = self.ready or info["ready"]
        self.beta = info["beta"] if info["beta"] is not None else self.beta

    def write_update(self, step: int, epoch: int, group: UpdateGroup, lr: float, aux_task: str) -> None:
        sums = group.sums
        losses = {"loss_src": sums["loss_src"], "loss_tgt": sums["loss_tgt"], "loss_aux": sums["loss_aux"] if aux_task != "none" else None,
                  "loss_mlm": sums["loss_aux"] if aux_task == "mlm" else None, "loss_total": sums["loss_total"]}
        record = update_record(step, epoch, group, lr, losses)
        record.update(labels_changed=self.changed, labels_updated=self.updated, denoise_s=self.denoise_seconds)
        self.target_losses.append(float(sums["loss_tgt"]))
        self.denoise_seconds = 0.0
        self.update_log.write(record, loss=f"{sums['loss_total']:.4f}", changed=self.changed)

    def end_epoch(self, denoiser: Denoiser, generator: torch.Generator, device: torch.device) -> dict:
        """Thresholds (Eq. 7) and the new neighbour bank from this epoch's projections."""
        cat = {key: torch.cat(values).to(device) for key, values in self.projections.items() if key not in ("local_t", "global_t")}
        local = torch.cat(self.projections["local_t"]).to(device) if self.local_complete and self.projections["local_t"] else None
        step_global = torch.cat(self.projections["global_t"]).to(device) if self.projections["global_t"] else None  # each step's scores under its own prototypes
        self.projections = {}
        return denoiser.end_epoch(cat["z_t"], cat["y_t"], cat["z_s"], cat["y_s"], generator=generator, target_local_scores=local,
                                  target_global_scores=step_global)


def refine_batch(run: TargetRun, out_s, out_t, source_labels: torch.Tensor, p_t: torch.Tensor, epoch: int, num_epochs: int, tally: EpochTally) -> torch.Tensor:
    """Step 3: prototypes observe the batch (Eq. 6), then its target labels are refined (Eqs. 8-11)."""
    tick = time.perf_counter()
    z_s, z_t = out_s.projections.detach(), out_t.projections.detach()
    run.denoiser.observe(torch.cat([z_s, z_t]), torch.cat([source_labels, p_t.argmax(1)]))  # Eq. 6
    p_new, info = run.denoiser.refine(z_t, p_t, epoch, num_epochs)  # Eqs. 8-11
    epoch_labels = p_t if run.denoiser.config.epoch_labels == "before_update" else p_new
    tally.add_refinement(info, z_s, source_labels, z_t, epoch_labels.argmax(1))
    if p_t.device.type == "cuda":
        torch.cuda.synchronize(p_t.device)
    tally.denoise_seconds += time.perf_counter() - tick
    return p_new


def auxiliary_loss(run: TargetRun, out_s, out_t, source_labels: torch.Tensor, p_new: torch.Tensor, target_batch: dict, mask_token_id: int, specials: list[int], opts: TargetTrainingOptions, device: torch.device) -> torch.Tensor:
    """Step 5: w's term of Eq. 5: the MLM loss (Eq. 2), the supervised contrastive loss, or none."""
    if opts.aux_task == "mlm":
        return masked_lm_step(run.model, target_batch, mask_token_id, specials, opts.mask_rate, opts.mlm_normalisation, run.generators["masks"], device, run.vocabulary, opts.precision)  # Eq. 2
    if opts.aux_task == "supcon":
        z = torch.cat([out_s.projections, out_t.projections])
        y = torch.cat([source_labels, p_new.argmax(1)])
        keep = supcon_subsample(y, opts.supcon_max_spans, run.generators["supcon"])
        if keep is not None:
            z, y = z[keep], y[keep]
        return supervised_contrastive_loss(z, y, opts.supcon_temperature)
    return torch.zeros((), device=device)


def prune_overlaps(targets: torch.Tensor, rows: np.ndarray, span_keys: tuple[np.ndarray, np.ndarray, np.ndarray], classes: Sequence[str]) -> torch.Tensor:
    """The step's soft targets with every pseudo entity that loses overlap resolution replaced by
    one-hot O (the authors' --postprocess_pseudo, train_tgt_model.py:683-697)."""
    sent_id, start, end = (keys[rows] for keys in span_keys)
    losers = overlap_losers(sent_id, start, end, targets.float().cpu().numpy(), classes)
    if not losers.any():
        return targets
    mask = torch.from_numpy(losers).to(targets.device)
    one_hot_o = torch.zeros_like(targets)
    one_hot_o[:, 0] = 1.0
    return torch.where(mask[:, None], one_hot_o, targets)


def training_step(run: TargetRun, source_batch: dict, target_batch: dict, labels: np.ndarray, epoch: int, opts: TargetTrainingOptions,
                  tally: EpochTally, specials: list[int], mask_token_id: int, group_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Steps 1-5 on one source and one target batch, and the backward pass of L_T / group_size;
    refined labels are written back into `labels`. Returns the loss terms."""
    need_projections = run.denoiser is not None or opts.aux_task == "supcon"
    source, target = move_batch(source_batch, device), move_batch(target_batch, device)
    with autocast(device, opts.precision):
        out_s = run.model(**source, return_projections=need_projections, frozen_depth=run.frozen_depth)
        out_t = run.model(**target, return_projections=need_projections, frozen_depth=run.frozen_depth)
    loss_form = opts.loss_form
    loss_src = loss_form.source(out_s.logits, source["labels"], source["span_sentence"], source["input_ids"].shape[0])  # Eq. 1

    rows = target_batch["span_rows"].numpy()
    p_t = torch.from_numpy(labels[rows]).to(device)
    p_new = p_t
    if run.denoiser is not None:
        p_new = refine_batch(run, out_s, out_t, source["labels"], p_t, epoch, opts.num_epochs, tally)
        labels[rows] = p_new.float().cpu().numpy()
    targets = p_new.detach()
    if opts.prune_overlaps_in_loss:
        targets = prune_overlaps(targets, rows, run.target_span_keys, run.classes)
    loss_tgt = loss_form.target(out_t.logits, targets, target["span_sentence"], target["input_ids"].shape[0])  # Eq. 4
    tally.predicted_entities += int((out_t.logits.detach().argmax(1) != 0).sum())

    loss_aux = auxiliary_loss(run, out_s, out_t, source["labels"], p_new, target_batch, mask_token_id, specials, opts, device)
    loss = target_objective(loss_src, loss_tgt, loss_aux, opts.aux_weight)  # Eq. 5
    (loss / group_size).backward()
    return {"loss_src": loss_src, "loss_tgt": loss_tgt, "loss_aux": loss_aux, "loss_total": loss}


# -- the variant -------------------------------------------------------------------------------


def variant_name(text: str) -> str:
    """`--variant`'s type: a name the workflow's `{variant}` wildcard would match."""
    if not VARIANT_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a variant name (letters, digits and _, as in the config's `variants`)")
    return text


def variant_from_path(path: Path | str | None) -> str | None:
    """The `{variant}` of a path in the workflow's layout of a target run,
    .../target/{dataset}/{lang}/{variant}/seed{N}/..., else None."""
    parts = Path(path).parts if path is not None else ()
    for i in range(len(parts) - 4):
        if parts[i] == "target" and _SEED_DIR.fullmatch(parts[i + 4]) and VARIANT_NAME.fullmatch(parts[i + 3]):
            return parts[i + 3]
    return None


def resolve_variant(variant: str | None, files: TargetFiles, trainer_in: dict | None) -> str | None:
    """The variant this epoch records: `variant` (--variant); else the one the previous epoch
    recorded; else the one its output paths name (variant_from_path of --final-model,
    --model-out, --state-out); else None (the model card then says it is unknown). A --variant
    other than the one the previous epoch recorded is refused: the epochs of a run are one variant."""
    recorded = (trainer_in or {}).get("variant")
    if variant is not None and recorded is not None and variant != recorded:
        raise GlodeInputError(files.state_in, f"is a state of variant {recorded!r}, not of --variant {variant!r}")
    if variant is not None or recorded is not None:
        return variant or recorded
    return next((name for name in map(variant_from_path, (files.final_model, files.model_out, files.state_out)) if name), None)


# -- outputs -----------------------------------------------------------------------------------


class RunHealthError(RuntimeError):
    """A target epoch past a run-health limit, with `health_stop` on."""


def check_health(inputs: TargetInputs, epoch: int, opts: TargetTrainingOptions, tally: EpochTally, mass_start: float, start_argmax: np.ndarray) -> dict:
    """The epoch's drift measures (glode.health) against the run's initial labels, whose entity
    mass and entity count epoch 0 records and later epochs carry over from the state."""
    carried = (inputs.trainer_in or {}).get("health") or {}
    mass_initial = carried.get("entity_mass_initial", mass_start) if epoch > 0 else mass_start
    initial_entities = carried.get("initial_entities", int((start_argmax != 0).sum())) if epoch > 0 else int((start_argmax != 0).sum())
    health = epoch_health(tally.target_losses, mass_start, entity_mass(inputs.labels), mass_initial, tally.predicted_entities, initial_entities, opts.health_limits)
    # every epoch's verdict so far, so the last epoch's record (the model card) covers the whole run
    health["history"] = (carried.get("history", []) if epoch > 0 else []) + [
        {"epoch": epoch, **{k: health[k] for k in ("loss_climb", "entity_mass_growth", "predicted_entity_ratio", "problems")}}]
    for problem in health["problems"]:
        log.warning("run health, epoch %d: %s", epoch, problem)
    if health["problems"] and opts.health_stop:
        raise RunHealthError(f"epoch {epoch} stopped by --health-stop: {'; '.join(health['problems'])}")
    log.info("run health, epoch %d: loss climb %s, entity mass %.1f -> %.1f, model's entity predictions %d (initial labels: %d entity spans)",
             epoch, "-" if health["loss_climb"] is None else f"{health['loss_climb']:.2f}x", mass_start, health["entity_mass_end"],
             health["predicted_entities"], initial_entities)
    return health


def labels_metadata(files: TargetFiles, inputs: TargetInputs, epoch: int, opts: TargetTrainingOptions, denoise_options: DenoiseOptions, tally: EpochTally, changed: int, end_info: dict,
                    health: dict) -> dict:
    """The refined labels' Parquet metadata (docs/data-formats.md)."""
    spans_meta = read_parquet_metadata(files.target_spans)
    meta = {k: spans_meta.get(k) for k in ("dataset", "lang", "split") if k in spans_meta}
    meta.update(
        classes=inputs.classes,
        # Only the run's last model outlives the run: earlier epochs' are temporary.
        model=str(files.model_out) if files.model_out else (str(files.final_model) if files.final_model and epoch == opts.num_epochs - 1 else None),
        pruned=bool(inputs.labels_meta.get("pruned", False)),
        spans_path=str(files.target_spans),
        sentences_path=str(files.target_sentences),
        labels_in=str(files.labels_in),
        epoch=epoch,
        num_epochs=opts.num_epochs,
        seed=opts.seed,
        aux_task=opts.aux_task,
        denoise=opts.denoise,
        denoise_config=json_safe(dataclasses.asdict(denoise_options)),
        beta=tally.beta,
        denoise_ready=tally.ready,
        labels_changed=changed,
        labels_updated=tally.updated,
        changed_to=dict(zip(inputs.classes, tally.changed_to)),
        directions=tally.directions,  # global vs local decisions of this epoch's updates (glode study diagnose)
        denoise_end_epoch=json_safe(end_info),
        method=opts.method,
        method_deviations=json_safe(method_deviations(opts.method, opts, denoise_options)),
        health=json_safe(health),
    )
    return meta


def trainer_record(files: TargetFiles, inputs: TargetInputs, run: TargetRun, epoch: int, opts: TargetTrainingOptions, denoise_options: DenoiseOptions, changed: int,
                   health: dict, variant: str | None = None) -> dict:
    """trainer.json: what the next epoch checks before it resumes (glode.target_state.read_trainer)."""
    inputs_used = {name: str(getattr(files, name)) for name in ("source_sentences", "source_spans", "target_sentences", "target_spans", "labels_in", "backbone")}
    return {
        "epoch": epoch,
        "num_epochs": opts.num_epochs,
        "step": run.step,
        "steps_per_epoch": run.steps_per_epoch,
        "updates_per_epoch": run.updates_per_epoch,
        "total_updates": run.updates_per_epoch * opts.num_epochs,
        "classes": inputs.classes,
        "options": json_safe(dataclasses.asdict(opts)),
        "denoise_config": json_safe(dataclasses.asdict(denoise_options)),
        "labels_sha256": labels_digest(inputs.labels),
        "labels_changed": changed,
        "variant": variant,  # the model card's system: target-{variant} (resolve_variant)
        "method": opts.method,
        "method_deviations": json_safe(method_deviations(opts.method, opts, denoise_options)),
        "health": json_safe(health),
        "target_spans": int(len(inputs.target_spans)),
        "span_settings": dataclasses.asdict(inputs.span_settings),
        "target_tokenisation": sentence_tokenisation(inputs.target),  # `glode tag`'s default for this model
        "splitter": splitter_record(inputs.target.attrs.get("glode", {})),  # how raw text given to this model is split
        "inputs": {**inputs_used, "state_in": str(files.state_in) if files.state_in else None, "mlm_vocab": str(files.mlm_vocab) if files.mlm_vocab else None},
    }


def write_epoch_outputs(files: TargetFiles, inputs: TargetInputs, run: TargetRun, epoch: int, opts: TargetTrainingOptions, denoise_options: DenoiseOptions,
                        tally: EpochTally, initial_argmax: np.ndarray, end_info: dict, seconds: float, device: torch.device, health: dict,
                        variant: str | None = None) -> dict:
    """The refined labels, the state for the next epoch and (on request) the model; returns the summary."""
    changed = int((inputs.labels.argmax(axis=1) != initial_argmax).sum())
    frame = predictions_frame(inputs.target_spans, inputs.target, inputs.labels, inputs.classes)
    frame["epoch"] = np.full(len(frame), epoch, dtype=np.int16)
    trainer = trainer_record(files, inputs, run, epoch, opts, denoise_options, changed, health, variant)
    summary = {**trainer, "last": tally.update_log.last, "denoise_end_epoch": json_safe(end_info), "seconds": seconds,
               "device": describe_device(device, opts.precision), "torch": torch.__version__}
    write_parquet(frame, files.labels_out, metadata=labels_metadata(files, inputs, epoch, opts, denoise_options, tally, changed, end_info, health))
    last = epoch == opts.num_epochs - 1
    save_state(files.state_out, run.model, inputs.tokenizer, run.optimizer, run.scheduler, run.denoiser, run.generators, trainer, summary,
               final_model=files.final_model if last else None)
    if files.model_out is not None:
        with atomic_dir(files.model_out) as tmp:
            save_model_dir(tmp, run.model, inputs.tokenizer, summary, final_dir=files.model_out)
    log.info("epoch %d/%d done: update %d, %d of %d pseudo labels changed (argmax), %.0f s", epoch, opts.num_epochs, run.step, changed, len(inputs.labels), seconds)
    return summary


# -- the epoch ---------------------------------------------------------------------------------


def train_target_epoch(files: TargetFiles, epoch: int, opts: TargetTrainingOptions, denoise_options: DenoiseOptions,
                       entity_types: list[str] | None = None, progress: bool | None = None, variant: str | None = None) -> dict:
    """Run target epoch `epoch` (0-based) and write its outputs; returns a summary dict.
    `variant`: the variant's name to record (resolve_variant says what happens without it)."""
    opts.validate()
    files.check_epoch(epoch, opts.num_epochs)
    started = time.perf_counter()
    seed_everything(opts.seed)
    device = select_device(opts.device)
    log.info("device: %s", describe_device(device, opts.precision))
    inputs = load_target_inputs(files, epoch, opts, denoise_options, entity_types)
    variant = resolve_variant(variant, files, inputs.trainer_in)
    initial_argmax = inputs.labels.argmax(axis=1)
    mass_start = entity_mass(inputs.labels)
    log.info("variant: %s", variant or "unknown (no --variant, none recorded by the previous epoch or named by the output paths)")
    log.info("behaviour: method %s%s", opts.method, "".join(f", {k}={v}" for k, v in method_deviations(opts.method, opts, denoise_options).items()))
    run = build_target_run(files, inputs, epoch, opts, denoise_options, device)
    mask_token_id, specials = inputs.tokenizer.mask_token_id, special_token_ids(inputs.tokenizer)

    with contextlib.ExitStack() as outputs:
        # The log goes to a temporary file renamed into place together with the other outputs, at the end.
        log_file = outputs.enter_context(open(outputs.enter_context(atomic_path(files.train_log)), "w", encoding="utf-8")) if files.train_log else None
        keep_global = run.denoiser is not None and denoise_options.use_global and denoise_options.thresholds == "authors"
        tally = EpochTally(len(inputs.classes), UpdateLog(log_file, run.updates_per_epoch, f"train-target epoch {epoch}", progress), keep_global)
        group = UpdateGroup(_LOSS_KEYS)
        for i, (target_batch, source_batch) in enumerate(zip(run.target_loader, run.source_loader)):
            group_size = accumulation_group_size(i, run.steps_per_epoch, opts.grad_accumulation)
            losses = training_step(run, source_batch, target_batch, inputs.labels, epoch, opts, tally, specials, mask_token_id, group_size, device)
            group.add(losses, group_size, target_batch["input_ids"].shape[0])
            if group.batches < group_size:
                continue
            lr = optimizer_update(run.optimizer, run.scheduler, run.params, opts.grad_clip)
            run.step += 1
            tally.write_update(run.step, epoch, group, lr, opts.aux_task)
            group = UpdateGroup(_LOSS_KEYS)
        tally.update_log.close()
        end_info = tally.end_epoch(run.denoiser, run.generators["bank"], device) if run.denoiser is not None else {}
        health = check_health(inputs, epoch, opts, tally, mass_start, initial_argmax)
        return write_epoch_outputs(files, inputs, run, epoch, opts, denoise_options, tally, initial_argmax, end_info, time.perf_counter() - started, device, health,
                                   variant)


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """The inputs and options every target-training entry point takes (`glode train-target`,
    `glode train-target-run`)."""
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
    parser.add_argument("--model-out", type=Path, help="also write the (last epoch's) model, with tokenizer, as a Hugging Face directory")
    parser.add_argument("--source-frozen-states", type=Path, help="`glode frozen-states` of the source sentences (with --cache-frozen-layers true)")
    parser.add_argument("--target-frozen-states", type=Path, help="`glode frozen-states` of the target sentences (with --cache-frozen-layers true)")
    parser.add_argument("--mlm-vocab", type=Path, help="`glode vocab` file: the MLM softmax over its pieces only (default: the whole vocabulary, as the paper)")
    parser.add_argument("--log", type=Path, help="also log to this file")
    parser.add_argument(
        "--variant", type=variant_name,
        help="the variant this run trains (the workflow's {variant}: glode, wo_denoising, glode_authors, ...), recorded in the model's "
        "glode_training.json and named by its card (system target-VARIANT); default: the previous epoch's record, else the "
        "{variant} of output paths laid out as .../target/{dataset}/{lang}/{variant}/seed{N}/..., else unknown",
    )
    # The dataclass reads as the paper (method paper); a run by hand gets the project's default.
    add_options(parser, TargetTrainingOptions, "training options", defaults={"method": DEFAULT_METHOD})
    add_options(parser, DenoiseOptions, "denoising options (glode.denoise.DenoiseOptions)")


def parse_target_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse the flags with `--method`'s preset (glode.methods) as the defaults of its keys: a
    flag given explicitly wins over the preset."""
    args = parser.parse_args(argv)
    preset = {key: value for section in method_keys(args.method).values() for key, value in section.items()}
    parser.set_defaults(**preset)
    return parser.parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glode train-target", description=__doc__.splitlines()[0])
    parser.add_argument("--epoch", required=True, type=int, help="the epoch to run, 0-based (< --num-epochs)")
    parser.add_argument("--state-out", required=True, type=Path, help="state directory to write (the next epoch's --state-in)")
    parser.add_argument("--labels-out", required=True, type=Path, help="refined pseudo labels Parquet to write")
    parser.add_argument("--train-log", type=Path, help="JSONL training log to write (one line per optimizer update)")
    parser.add_argument(
        "--final-model", type=Path,
        help="where the run's last model will be kept when another step copies it out of the last --state-out; "
        "the last epoch's labels record it as their `model` (default: --model-out, else none)",
    )
    add_input_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_target_arguments(build_parser(), argv)
    setup_logging(args.log)
    files = TargetFiles(**{field.name: getattr(args, field.name) for field in dataclasses.fields(TargetFiles)})
    train_target_epoch(files, args.epoch, options_from_args(TargetTrainingOptions, args), options_from_args(DenoiseOptions, args), args.entity_types,
                       variant=args.variant)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
