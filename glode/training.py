"""Pieces shared by the training stages (`glode train-source`, `glode train-target`).

* the optimiser and its schedule: AdamW with decay on weight matrices only (HF grouping), linear
  warm-up then linear decay, counted in optimizer updates (`build_optimizer`, `build_scheduler`,
  `optimizer_update`);
* gradient accumulation bookkeeping: how many batches the current update gathers and the running
  (already averaged) loss terms of that update (`accumulation_group_size`, `UpdateGroup`);
* the MLM term of one batch of target sentences (Eq. 2, `masked_lm_step`);
* the supervised contrastive loss of the `supcon` auxiliary task (`supervised_contrastive_loss`);
* capturing and restoring every random state of a run, for exact resumption (`capture_rng_state`,
  `restore_rng_state`);
* the settings both stages share (`TrainingOptions`), which each stage's options extend.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from glode.batching import move_batch
from glode.device import autocast
from glode.model import MLM_NORMALISATIONS, SpanModel, mask_tokens, masked_lm_loss
from glode.options import option


@dataclass
class TrainingOptions:
    """Optimisation and model settings of both training stages (paper 4.1 and the authors' runs)."""

    batch_size: int = option(8, "sentences per source batch and per target batch")
    grad_accumulation: int = option(4, "batches per optimizer update (8 x 4 = the paper's 32)")
    lr: float = option(1e-5, "AdamW learning rate")
    head_lr: float = option(0.0, "learning rate of the parts outside the encoder (classifier, width/morphology embeddings, MLM transform); 0 = lr, as the paper (demo scale: higher)")
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.98, "AdamW beta2")
    adam_eps: float = option(1e-8, "AdamW epsilon")
    weight_decay: float = option(0.01, "AdamW weight decay (not on biases and LayerNorm weights)")
    warmup_steps: int = option(50, "linear warm-up updates, then linear decay to 0 at the end of the run")
    grad_clip: float = option(1.0, "gradient norm clipping (0 = off)")
    dropout: float = option(0.2, "dropout on the span vector before the classifier")
    mask_rate: float = option(0.25, "MLM mask rate r_m")
    mlm_weight: float = option(1e-3, "w in Eqs. 3 and 5 (paper: 1e-3; 1e-5 for es)")
    mlm_normalisation: str = option("masked", "Eq. 2 averaging: 'masked' (authors: mean over masked tokens) or 'tokens' (paper: 1/|X'| per sentence)")
    train_projection: bool = option(False, "let gradients reach the 128-d projection head (authors: never trained)")
    seed: int = option(1, "seed of everything random in the run")
    max_seq_len: int = option(128, "encoder window in subwords (must match the spans files)")
    max_span_len: int = option(4, "longest span in words (must match the spans files)")
    freeze_word_embeddings: bool = option(False, "CPU demo: freeze the word embeddings (and the tied MLM decoder)")
    train_top_layers: int = option(0, "CPU demo: train only the encoder's top N layers (0 = all)")
    encoder_layers: int = option(0, "CPU demo: keep only the backbone's bottom N layers (0 = all); a model built on the backbone, not one resumed")
    device: str = option("auto", "auto (CUDA with bf16 autocast if available, else CPU fp32), cpu, cuda, cuda:N")
    num_workers: int = option(0, "DataLoader worker processes")

    def validate_common(self) -> None:
        if self.mlm_normalisation not in MLM_NORMALISATIONS:
            raise ValueError(f"--mlm-normalisation must be one of {MLM_NORMALISATIONS}")
        if self.batch_size < 1 or self.grad_accumulation < 1:
            raise ValueError("--batch-size and --grad-accumulation must be >= 1")
        if not 0.0 <= self.mask_rate <= 1.0:
            raise ValueError("--mask-rate must be in [0, 1]")


# -- optimisation ------------------------------------------------------------------------------


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


# -- auxiliary losses --------------------------------------------------------------------------


def special_token_ids(tokenizer) -> list[int]:
    """<s>, </s>, <pad> (and their BERT-style equivalents where a tokenizer uses those)."""
    ids = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    return sorted(i for i in ids if i is not None)


def masked_lm_step(
    model: SpanModel,
    batch: dict,
    mask_token_id: int,
    specials: list[int],
    mask_rate: float,
    normalisation: str,
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """L_mlm (Eq. 2) of one batch of sentences: mask r_m of a copy of its tokens, predict them.

    The masks are drawn on the CPU from `generator` (the same masks on any device)."""
    masked_ids, mask = mask_tokens(batch["input_ids"], batch["attention_mask"], mask_token_id, specials, mask_rate, generator)
    batch = move_batch(batch, device)
    masked_ids, mask = masked_ids.to(device), mask.to(device)
    with autocast(device):
        logits = model.masked_lm_logits(masked_ids, batch["attention_mask"], mask)
    token_sentence = mask.nonzero(as_tuple=True)[0]
    return masked_lm_loss(logits, batch["input_ids"][mask], token_sentence, batch["n_maskable"], normalisation)


def supervised_contrastive_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, the L_out form), the `supcon` auxiliary task
    of GLoDe_agnostic (paper Table 4), which replaces the MLM term of Eq. 5:

        L = mean over anchors i with a positive of  -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p / tau) / sum_{a != i} exp(z_i.z_a / tau) )

    z [N, D] is L2-normalised here; P(i) = the other spans with i's label. Anchors without any
    positive are left out; returns 0 (with a graph) when there is none.
    """
    z = F.normalize(z.float(), dim=1)
    n = z.shape[0]
    labels = labels.long()
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    # a large finite negative instead of -inf: a row with no other span would otherwise give
    # NaN gradients through the log-sum-exp
    logits = (z @ z.T / temperature).masked_fill(self_mask, -1e4)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    n_positives = positives.sum(dim=1)
    anchors = n_positives > 0
    if not bool(anchors.any()):
        return z.sum() * 0.0
    per_anchor = -(log_prob * positives).sum(dim=1)[anchors] / n_positives[anchors]
    return per_anchor.mean()


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


def source_objective(loss_src: torch.Tensor, loss_mlm: torch.Tensor, mlm_weight: float) -> torch.Tensor:
    """Eq. 3: the source model's loss L_S = L_src + w * L_mlm."""
    return loss_src + mlm_weight * loss_mlm


def target_objective(loss_src: torch.Tensor, loss_tgt: torch.Tensor, loss_aux: torch.Tensor, aux_weight: float) -> torch.Tensor:
    """Eq. 5: the target model's loss L_T = L_src + L_tgt + w * L_mlm.

    `loss_aux` is L_mlm for GLoDe; for GLoDe_agnostic (Table 4) it is the supervised contrastive
    loss that replaces it, and zero for the ablation "w/o mlm".
    """
    return loss_src + loss_tgt + aux_weight * loss_aux
