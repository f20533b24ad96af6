"""What both training stages (`glode train-source`, `glode train-target`) share.

* the settings (`TrainingOptions`, which each stage's options extend) and the class list
  (`resolve_classes`);
* the run's random streams, all derived from its one seed (`sampler_seed`, `stream_generator`);
* the model: built on the backbone or loaded, frozen where configured, on its device
  (`build_span_model`), and saved as a complete Hugging Face directory (`save_model_dir`);
* the optimizer and its schedule: AdamW with decay on weight matrices only (HF grouping), linear
  warm-up then linear decay, counted in optimizer updates (`build_optimizer`, `build_scheduler`,
  `optimizer_update`);
* gradient accumulation bookkeeping and the per-update log: how many batches the current update
  gathers, the running (already averaged) loss terms of that update, and the JSONL record and
  progress bar it produces (`accumulation_group_size`, `UpdateGroup`, `UpdateLog`);
* the MLM term of one batch of target sentences (Eq. 2, `masked_lm_step`);
* capturing and restoring every random state of a run, for exact resumption (`capture_rng_state`,
  `restore_rng_state`).

The losses themselves (Eqs. 1-5) are in glode.objectives.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Mapping, Sequence

import numpy as np
import torch

from glode.batching import move_batch
from glode.data import class_names
from glode.device import DEVICE_PATTERN, PRECISIONS, autocast, make_generator
from glode.io import TRAINING_SUMMARY_FILE, GlodeInputError, read_parquet_metadata, write_json
from glode.model import SpanModel
from glode.objectives import MLM_NORMALISATIONS, mask_tokens, masked_lm_loss
from glode.options import OptionError, check_ranges, option
from glode.spans import SpanSettings

log = logging.getLogger(__name__)

# glode.io.atomic_path's temporary file of output NAME: ".NAME.<random letters, digits, _>.tmp"
_TEMP_FILE_NAME = re.compile(r"\.(?P<output>.+)\.[A-Za-z0-9_]+\.tmp")


@dataclass
class TrainingOptions:
    """Optimization and model settings of both training stages (paper 4.1 and the authors' runs)."""

    batch_size: int = option(8, "sentences per source batch and per target batch", minimum=1)
    grad_accumulation: int = option(4, "batches per optimizer update (8 x 4 = the paper's 32)", minimum=1)
    lr: float = option(1e-5, "AdamW learning rate", above=0)
    head_lr: float = option(0.0, "learning rate of the parts outside the encoder (classifier, width/morphology embeddings, MLM transform); 0 = lr, as the paper (demo scale: higher)", minimum=0)
    adam_beta1: float = option(0.9, "AdamW beta1", minimum=0, below=1)
    adam_beta2: float = option(0.98, "AdamW beta2", minimum=0, below=1)
    adam_eps: float = option(1e-8, "AdamW epsilon", above=0)
    weight_decay: float = option(0.01, "AdamW weight decay (not on biases and LayerNorm weights)", minimum=0)
    warmup_steps: int = option(50, "linear warm-up updates, then linear decay to 0 at the end of the run", minimum=0)
    grad_clip: float = option(1.0, "gradient norm clipping (0 = off)", minimum=0)
    dropout: float = option(0.2, "dropout on the span vector before the classifier", minimum=0, below=1)
    mask_rate: float = option(0.25, "MLM mask rate r_m", above=0, maximum=1)
    mlm_weight: float = option(1e-3, "w in Eqs. 3 and 5 (paper: 1e-3; 1e-5 for es)", minimum=0)
    mlm_normalisation: str = option("masked", "Eq. 2 averaging: 'masked' (authors: mean over masked tokens) or 'tokens' (paper: 1/|X'| per sentence)", choices=MLM_NORMALISATIONS)
    train_projection: bool = option(False, "let gradients reach the 128-d projection head (authors: never trained)")
    seed: int = option(1, "seed of everything random in the run", minimum=0)
    freeze_word_embeddings: bool = option(False, "CPU demo: freeze the word embeddings (and the tied MLM decoder)")
    train_top_layers: int = option(0, "CPU demo: train only the encoder's top N layers (0 = all)", minimum=0)
    encoder_layers: int = option(0, "CPU demo: keep only the backbone's bottom N layers (0 = all); a model built on the backbone, not one resumed", minimum=0)
    cache_frozen_layers: bool = option(False, "feed the frozen bottom layers' output from a `glode frozen-states` file (needs train_top_layers; their dropout is then off)")
    device: str = option("auto", "auto (CUDA if available, else CPU), cpu, cuda, cuda:N", pattern=DEVICE_PATTERN)
    precision: str = option("auto", "auto (bf16 autocast on CUDA, fp32 on the CPU), bf16 (autocast on CUDA or a CPU with bf16 support), fp32", choices=PRECISIONS)
    num_workers: int = option(0, "DataLoader worker processes", minimum=0)

    def validate_common(self) -> None:
        """The declared ranges of every field (glode.options), then what involves two fields."""
        check_ranges(self)
        if self.cache_frozen_layers and self.train_top_layers < 1:
            raise OptionError("--cache-frozen-layers needs --train-top-layers >= 1 (otherwise no layer is frozen)")


# -- classes and random streams ----------------------------------------------------------------


def resolve_classes(source_sentences: os.PathLike | str, entity_types: Sequence[str] | None) -> list[str]:
    """The span classifier's classes: O, then `entity_types` or, without them, the source file's."""
    entity_types = list(entity_types or read_parquet_metadata(source_sentences).get("entity_types") or [])
    if not entity_types:
        raise GlodeInputError(source_sentences, "no entity types given (--entity-types) and none in the file's metadata")
    return class_names(entity_types)


def sampler_seed(seed: int, stream: int) -> int:
    """The integer seed of a batch sampler (glode.batching.LengthBucketBatchSampler, which draws
    each pass's order from (seed, pass)). A rule of its own beside `stream_generator`'s: the
    samplers have always been seeded this way, and changing it would reorder every run's batches."""
    return seed * 1000 + stream


def stream_generator(seed: int, stream: int) -> torch.Generator:
    """The CPU generator of one of the run's random streams (masks, subsamples, supcon, bank),
    independent of how many numbers the model's dropout drew before."""
    return make_generator(seed, stream)


# -- the model ---------------------------------------------------------------------------------


def build_span_model(
    opts: "TrainingOptions",
    classes: list[str],
    span_settings: SpanSettings,
    device: torch.device,
    *,
    backbone: str | None = None,
    load_from: Path | None = None,
    train_projection: bool = False,
) -> SpanModel:
    """The span model in training mode on `device`, frozen where `opts` says: built on the
    pretrained `backbone`, or loaded from the span model directory `load_from` (a source model or
    a saved state), whose classes and span width must fit the data."""
    if load_from is None:
        model = SpanModel.from_backbone(
            backbone, classes, encoder_layers=opts.encoder_layers, dropout=opts.dropout,
            max_span_len=span_settings.max_span_len, train_projection=train_projection,
        )  # fmt: skip
    else:
        model = SpanModel.from_pretrained(str(load_from))
        if list(model.classes) != list(classes):
            raise GlodeInputError(load_from, f"has classes {model.classes}, the data {classes}")
        if model.config.max_span_len < span_settings.max_span_len:
            raise GlodeInputError(load_from, f"handles spans of up to {model.config.max_span_len} words, the spans files have {span_settings.max_span_len}")
        model.config.train_projection = train_projection
        model.projection.requires_grad_(train_projection)
    model.freeze_encoder_parts(opts.freeze_word_embeddings, opts.train_top_layers)
    return model.to(device).train()


def frozen_states_for(opts: "TrainingOptions", model: SpanModel, *caches: tuple[list[dict], Path | None]) -> int:
    """Attach the cached frozen-layer output of each (items, path) pair to its items where
    `opts.cache_frozen_layers`; returns the cached depth (0 = none: the model runs every layer)."""
    paths = [path for _, path in caches]
    if not opts.cache_frozen_layers:
        if any(path is not None for path in paths):
            raise ValueError("a frozen-states file was given, but --cache-frozen-layers is false")
        return 0
    if any(path is None for path in paths):
        raise ValueError("--cache-frozen-layers true needs the sentences' `glode frozen-states` file")
    from glode.frozen_states import attach_frozen_states, frozen_part

    expected = frozen_part(model)  # once for all the job's caches: it hashes the embeddings
    for items, path in caches:
        attach_frozen_states(items, path, model, expected)
    return expected[0]


def save_model_dir(out: Path, model: SpanModel, tokenizer, summary: dict, final_dir: Path | None = None) -> None:
    """A complete Hugging Face model directory: weights, config, tokenizer, glode_training.json
    and its model card (README.md, whose usage lines name `final_dir`, where the model will be)."""
    from glode.model_card import spans_stats_of, training_data, write_model_card

    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    write_json(summary, Path(out) / TRAINING_SUMMARY_FILE)
    write_model_card(out, summary, data=training_data(summary), unreachable=spans_stats_of(summary), final_dir=final_dir or out)


# -- optimization ------------------------------------------------------------------------------


def build_optimizer(
    model: SpanModel, lr: float, betas: tuple[float, float], eps: float, weight_decay: float, head_lr: float = 0.0
) -> tuple[torch.optim.AdamW, list[torch.nn.Parameter]]:
    """AdamW over the model's trainable parameters (decay on weight matrices, not on biases and
    LayerNorm weights; `head_lr` > 0 gives the non-encoder parts their own rate); returns
    (optimizer, the flat list of its parameters, for clipping)."""
    groups = model.trainable_parameter_groups(weight_decay, head_lr=head_lr if head_lr > 0 else None)
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
    return optimizer, [p for g in groups for p in g["params"]]


def build_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_updates: int):
    """Linear warm-up over `warmup_steps` updates, then linear decay to 0 at `total_updates`."""
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, warmup_steps, total_updates)


def optimizer_update(optimizer: torch.optim.Optimizer, scheduler, params: list[torch.nn.Parameter], grad_clip: float) -> float:
    """Clip, step, advance the schedule, clear the gradients; returns the lr the update used."""
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return lr


def accumulation_group_size(batch_index: int, batches_per_epoch: int, grad_accumulation: int) -> int:
    """Batches gathered by the update that batch `batch_index` (0-based, within the epoch) belongs to:
    `grad_accumulation`, except the epoch's last update, which may gather fewer."""
    first = (batch_index // grad_accumulation) * grad_accumulation
    return min(grad_accumulation, batches_per_epoch - first)


class UpdateGroup:
    """The batches of one optimizer update: loss terms averaged over the group's batches (each
    batch adds value / group_size, the same weight its loss gets in the backward pass), the
    number of sentences and the wall time since the group started."""

    def __init__(self, keys: tuple[str, ...]):
        self.sums = {key: 0.0 for key in keys}
        self.sentences = 0
        self.batches = 0
        self.started = time.perf_counter()

    def add(self, values: Mapping[str, torch.Tensor | float], group_size: int, sentences: int) -> None:
        for key, value in values.items():
            self.sums[key] += (value.item() if isinstance(value, torch.Tensor) else float(value)) / group_size
        self.sentences += sentences
        self.batches += 1

    def sentences_per_s(self) -> float | None:
        elapsed = time.perf_counter() - self.started
        return self.sentences / elapsed if elapsed > 0 else None


def update_record(step: int, epoch: int, group: UpdateGroup, lr: float, losses: Mapping[str, float | None]) -> dict:
    """The JSONL record of one optimizer update: step, epoch, the loss terms, lr, sentences per second."""
    return {"step": step, "epoch": epoch, **losses, "lr": lr, "sentences_per_s": group.sentences_per_s()}


def remove_stale_temp_files(temp_file: os.PathLike | str) -> list[Path]:
    """Delete the other temporary files of the output that `temp_file` will become (glode.io's
    atomic_path names them `.<output name>.<random>.tmp`); returns what it deleted.

    A training stage opens its log's temporary file when it starts and renames it into place only
    when it ends, so a job killed in between (SIGKILL, a lost node) leaves a `.train_log.jsonl.*.tmp`
    behind. Only one job writes an output at a time (Snakemake locks its outputs), so when a job
    starts, every other temporary file of its log belongs to a job that is gone."""
    temp_file = Path(temp_file)
    match = _TEMP_FILE_NAME.fullmatch(temp_file.name)
    if match is None:
        return []  # not an atomic_path temporary file: nothing of ours to tidy
    siblings = re.compile(rf"\.{re.escape(match.group('output'))}\.[A-Za-z0-9_]+\.tmp")
    stale = [p for p in temp_file.parent.iterdir() if siblings.fullmatch(p.name) and p.name != temp_file.name and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
        log.info("removed %s, left by a job that was killed before it finished", path)
    return stale


class UpdateLog:
    """Where a training stage reports its updates: one JSON line each in `file` (already open;
    the caller renames it into place with its other outputs) and a progress bar on a terminal.
    Temporary files of the same log that a killed job left behind are removed when it starts."""

    def __init__(self, file: IO[str] | None, total: int, desc: str, progress: bool | None = None):
        from tqdm.auto import tqdm

        if file is not None and isinstance(getattr(file, "name", None), str):
            remove_stale_temp_files(file.name)
        self.file = file
        self.bar = tqdm(total=total, desc=desc, unit="update", disable=not (sys.stderr.isatty() if progress is None else progress))
        self.last: dict = {}

    def write(self, record: dict, **postfix) -> None:
        self.last = record
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
        self.bar.update(1)
        self.bar.set_postfix(**postfix)

    def close(self) -> None:
        self.bar.close()


# -- the MLM term --------------------------------------------------------------------------------


class CorpusVocabulary:
    """The pieces an MLM head predicts over (`mlm_vocabulary: corpus`, glode.vocab): their sorted
    ids on the device, and the column of each piece id (-1 for pieces left out)."""

    def __init__(self, piece_ids: np.ndarray, vocab_size: int, device: torch.device):
        self.ids = torch.as_tensor(piece_ids, dtype=torch.long, device=device)
        self.column = torch.full((vocab_size,), -1, dtype=torch.long, device=device)
        self.column[self.ids] = torch.arange(len(self.ids), device=device)

    def targets(self, piece_ids: torch.Tensor) -> torch.Tensor:
        """The columns of the masked pieces; a piece outside the vocabulary is an error (the file
        was built from other sentences), never a silently dropped target."""
        columns = self.column[piece_ids]
        if bool((columns < 0).any()):
            missing = piece_ids[columns < 0][:5].tolist()
            raise ValueError(f"masked pieces {missing} are not in the MLM corpus vocabulary: was it built from these sentences?")
        return columns


def corpus_vocabulary(path: os.PathLike | str | None, model: SpanModel, device: torch.device) -> CorpusVocabulary | None:
    """The `glode vocab` file at `path` for this model's MLM head, or None (the whole vocabulary)."""
    if path is None:
        return None
    from glode.vocab import read_mlm_vocabulary

    size = model.get_input_embeddings().num_embeddings
    return CorpusVocabulary(read_mlm_vocabulary(path, size), size, device)


def masked_lm_step(
    model: SpanModel,
    batch: dict,
    mask_token_id: int,
    specials: list[int],
    mask_rate: float,
    normalisation: str,
    generator: torch.Generator,
    device: torch.device,
    vocabulary: CorpusVocabulary | None = None,
    precision: str = "auto",
) -> torch.Tensor:
    """L_mlm (Eq. 2) of one batch of sentences: mask r_m of a copy of its tokens, predict them
    (over `vocabulary` only when given).

    The masks are drawn on the CPU from `generator` (the same masks on any device)."""
    masked_ids, mask = mask_tokens(batch["input_ids"], batch["attention_mask"], mask_token_id, specials, mask_rate, generator)
    batch = move_batch({key: batch[key] for key in ("input_ids", "attention_mask", "n_maskable")}, device)
    masked_ids, mask = masked_ids.to(device), mask.to(device)
    with autocast(device, precision):
        logits = model.masked_lm_logits(masked_ids, batch["attention_mask"], mask, None if vocabulary is None else vocabulary.ids)
    token_sentence = mask.nonzero(as_tuple=True)[0]
    targets = batch["input_ids"][mask]
    if vocabulary is not None:
        targets = vocabulary.targets(targets)
    return masked_lm_loss(logits, targets, token_sentence, batch["n_maskable"], normalisation)


# -- random states -----------------------------------------------------------------------------


def capture_rng_state(generators: Mapping[str, torch.Generator]) -> dict:
    """Every random state of the run: Python, NumPy, torch CPU and CUDA (the model's dropout draws
    from torch's global generator) and the run's own named CPU generators. Tensors and plain
    containers only, so `torch.load(weights_only=True)` reads it back."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {name: g.get_state() for name, g in generators.items()},
    }
    return state


def restore_rng_state(state: dict, generators: Mapping[str, torch.Generator]) -> None:
    """Undo `capture_rng_state`: set the global generators and the named ones (every name must be there)."""
    random.setstate(_as_tuple(state["python"]))
    npst = state["numpy"]
    np.random.set_state((npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:  # another GPU count: seed what we can, the run is no longer bit-exact anyway
            torch.cuda.set_rng_state(state["cuda"][0])
    missing = set(generators) - set(state["generators"])
    if missing:
        raise KeyError(f"saved random state has no generator(s) {sorted(missing)}")
    for name, generator in generators.items():
        generator.set_state(state["generators"][name])


def _as_tuple(value):
    """random.setstate wants tuples all the way down (a save/load round trip may give lists)."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value
