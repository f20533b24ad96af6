"""Global-local pseudo-label denoising (paper section 3.2, Eqs. 6-11), vectorised in torch.

One function per equation, then a kNN bank (`NeighbourBank`) and a small state object
(`Denoiser`) that the target-training loop drives:

    observe(z, labels)         every step: prototype EMA over source-gold + target-pseudo spans (Eq. 6)
    refine(z_t, p_t, epoch, E) every step: global/local scores -> directions -> merge -> update (Eqs. 8-11)
    end_epoch(...)             every epoch end: thresholds (Eq. 7) and a rebuilt neighbour bank

Conventions: class index 0 is always "O"; span vectors z are the 128-d denoising projections and
are L2-normalised here (dot product = cosine); no per-span Python loops anywhere.

Where the authors' code (see shared/docs/reference-notes.md) and the paper differ, the choice is
a `DenoiseOptions` option and the docstring below says which side the default takes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from glode.options import option

log = logging.getLogger(__name__)

O_CLASS = 0


# --------------------------------------------------------------------------------------------
# Equations
# --------------------------------------------------------------------------------------------


def ema_prototypes(prototypes: torch.Tensor, z: torch.Tensor, labels: torch.Tensor, alpha: float = 0.99) -> torch.Tensor:
    """Prototype moving average over one batch of spans (Eq. 6); returns new [C, D] prototypes.

    The paper applies phi_c <- alpha*phi_c + (1-alpha)*z_i span by span. Done sequentially over
    the n spans of class c in batch order, that is exactly

        phi_c' = alpha^n * phi_c + sum_{i=1..n} (1-alpha) * alpha^(n-i) * z_i,

    which is computed here in one shot for every class (per-class rank of each span within the
    batch from a cumulative one-hot count, then one weighted one-hot matmul). As in the authors' code the L2
    normalisation is applied once per batch, to each class row that received spans, not after
    every span. Classes with no span in the batch are returned unchanged. Labels < 0 are ignored
    (padding).

    First update: prototypes start as zeros, so the first batch gives phi_c' = normalise(
    sum_i (1-alpha) alpha^(n-i) z_i); the (1-alpha) factor cancels in the normalisation, i.e. the
    first prototype is the direction of the recency-weighted sum of the class's spans. (A zero
    weighted sum stays a zero row.)
    """
    num_classes = prototypes.shape[0]
    labels = labels.long()
    if bool((labels < 0).any()):
        keep = labels >= 0
        z, labels = z[keep], labels[keep]
    if labels.numel() == 0:
        return prototypes.clone()
    one_hot = F.one_hot(labels, num_classes)  # [N, C]
    # rank of each span among the spans of its class, 0-based, in batch order
    rank = one_hot.cumsum(0).gather(1, labels[:, None]).squeeze(1) - 1
    count = one_hot.sum(0)  # [C]
    exponent = (count[labels] - 1 - rank).double()
    # float64 weights (alpha^2000 ~ 1e-9 is fine, but keep them exact before the sum)
    weights = (1.0 - alpha) * torch.pow(torch.full_like(exponent, alpha), exponent)
    # [C, N] @ [N, D]: the per-class weighted sums as one matmul (scatter/index_add is slow on CPU)
    weighted = (one_hot.double() * weights[:, None]).T @ z.double()
    decay = torch.pow(torch.full((num_classes,), alpha, dtype=torch.float64, device=prototypes.device), count.double())
    updated = decay[:, None] * prototypes.double() + weighted.to(prototypes.device)
    updated = F.normalize(updated, p=2, dim=1).to(prototypes.dtype)
    touched = (count > 0)[:, None].to(prototypes.device)
    return torch.where(touched, updated, prototypes)


def global_scores(z: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Global similarity score sim_i^c = z_i . phi_c ("global similarity score", section 3.2).

    z [N, D] and the prototypes [C, D] are L2-normalised, so this is the cosine. A prototype that
    has not received any span yet is a zero row and scores 0.
    """
    return z @ prototypes.to(z.dtype).T


def _own_class_score_sums(scores: torch.Tensor, pseudo_labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class c: the sum (float64) of scores[:, c] over the spans labelled c, and their count."""
    labels = pseudo_labels.long()
    own = scores.gather(1, labels[:, None]).squeeze(1).double()
    sums = torch.zeros(num_classes, dtype=torch.float64, device=scores.device).index_add_(0, labels, own)
    return sums, torch.bincount(labels, minlength=num_classes)


def class_thresholds(scores: torch.Tensor, pseudo_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class similarity threshold sim_T^c (Eq. 7): the mean of scores[:, c] over the spans
    whose pseudo label (argmax of the soft label) is c.

    Used for global and local scores alike. A class that no span is labelled with gets +inf, so
    no span can pass it (there is no evidence of what a typical score for it looks like).
    """
    sums, counts = _own_class_score_sums(scores, pseudo_labels, num_classes)
    means = sums / counts.clamp_min(1)
    return torch.where(counts > 0, means, torch.full_like(means, math.inf)).to(scores.dtype)


def class_thresholds_with_zero_row(scores: torch.Tensor, pseudo_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Eq. 7's threshold as the authors' code computes it (train_tgt_model.py:472-483 global,
    :501-511 local): the mean of scores[:, c] over the spans labelled c *and one zero row*, i.e.
    sum / (n_c + 1). A class that no span is labelled with gets 0 (any positive score passes),
    not +inf as in `class_thresholds`."""
    sums, counts = _own_class_score_sums(scores, pseudo_labels, num_classes)
    return (sums / (counts + 1)).to(scores.dtype)


THRESHOLD_FORMS = ("paper", "authors")
EPOCH_LABELS = ("refined", "before_update")


def local_scores(neighbour_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Local similarity score (Eq. 9): the fraction of a span's K neighbours labelled c.

    neighbour_labels [N, K] -> [N, C]; K is the number of neighbours actually retrieved.
    """
    n, k = neighbour_labels.shape
    counts = torch.zeros(n, num_classes, dtype=torch.float32, device=neighbour_labels.device)
    counts.scatter_add_(1, neighbour_labels.long(), torch.ones(n, k, dtype=torch.float32, device=neighbour_labels.device))
    return counts / max(k, 1)


def denoising_directions(scores: torch.Tensor, thresholds: torch.Tensor, multiple: bool = True) -> torch.Tensor:
    """Binary denoising directions d_i (Eq. 8): b_i^c = 1[sim_i^c > sim_T^c], as float [N, C].

    O special case (section 3.2): when a span's top-scoring class is O, O is a direction whatever
    its threshold. Ties for the top score go to the lowest class index (torch.argmax).

    multiple=False is the ablation "w/o multiple directions": only the top-scoring class can be a
    direction, and only if it passes its threshold or is O (the same O rule as above), so a span
    whose top class fails its threshold gets no direction and keeps its label.
    """
    passes = scores > thresholds.to(scores.dtype)[None, :]
    top = scores.argmax(dim=1)
    top_is_o = top == O_CLASS
    if multiple:
        passes[:, O_CLASS] |= top_is_o
        return passes.to(scores.dtype)
    top_ok = passes.gather(1, top[:, None]).squeeze(1) | top_is_o
    return F.one_hot(top, scores.shape[1]).to(scores.dtype) * top_ok[:, None].to(scores.dtype)


def _l1_normalise(x: torch.Tensor) -> torch.Tensor:
    """Rows divided by their L1 norm; an all-zero row stays zero."""
    return F.normalize(x, p=1, dim=1)


def merge_directions(d_global: torch.Tensor, d_local: torch.Tensor, normalise_each: bool = True) -> torch.Tensor:
    """Update decision u_i = L1-normalise(d_i^g + d_i^l) (Eq. 10).

    normalise_each=True (default, as the authors' code does) L1-normalises d^g and d^l before
    adding them, so each decision level carries the same total weight whatever its number of
    directions; False is the paper's formula literally. Rows with no direction at all give a
    zero vector (meaning: leave this label alone, see `update_pseudo_labels`).
    """
    if normalise_each:
        d_global, d_local = _l1_normalise(d_global), _l1_normalise(d_local)
    return _l1_normalise(d_global + d_local)


def update_pseudo_labels(p: torch.Tensor, u: torch.Tensor, beta: float) -> torch.Tensor:
    """Pseudo-label refinement p' = L1-normalise(beta * p + (1 - beta) * u) (Eq. 11).

    Rows whose u is all zero (no denoising direction) are returned unchanged, not re-weighted.
    """
    mixed = _l1_normalise(beta * p + (1.0 - beta) * u.to(p.dtype))
    has_direction = (u != 0).any(dim=1, keepdim=True)
    return torch.where(has_direction, mixed, p)


NO_DIRECTIONS = {"global_only": 0, "local_only": 0, "both": 0, "both_agree": 0}  # direction_agreement's keys


def direction_agreement(d_global: torch.Tensor, d_local: torch.Tensor) -> dict[str, int]:
    """How the two decision levels relate, for the analysis of what the denoiser does (not an
    equation): spans with a direction from the global level only, the local level only, both, and
    both with the same set of directions."""
    has_g, has_l = (d_global != 0).any(1), (d_local != 0).any(1)
    both = has_g & has_l
    same = ((d_global != 0) == (d_local != 0)).all(1) & both
    return {"global_only": int((has_g & ~has_l).sum()), "local_only": int((has_l & ~has_g).sum()),
            "both": int(both.sum()), "both_agree": int(same.sum())}


def beta_schedule(epoch: int, num_epochs: int, start: float = 0.95, end: float = 0.80) -> float:
    """Update rate beta of Eq. 11 for an epoch (0-based): linear from `start` at epoch 0 to
    exactly `end` at the last epoch (num_epochs - 1), as the paper says ("uniformly decreases
    from 0.95 to 0.80"). The authors' code counts from its warm-up epoch instead:
    `beta_schedule_authors`.

    num_epochs == 1: the only epoch is the last, so it gets `end` (the invariant "the last epoch
    uses `end`" holds for every num_epochs). Epochs past the end are clamped to `end`.
    """
    if num_epochs < 1 or epoch < 0:
        raise ValueError(f"beta_schedule needs epoch >= 0 and num_epochs >= 1, got {epoch}, {num_epochs}")
    if num_epochs == 1 or epoch >= num_epochs - 1:
        return float(end)
    return float(start + (end - start) * epoch / (num_epochs - 1))


def beta_schedule_authors(epoch: int, num_epochs: int, start: float = 0.95, end: float = 0.80, update_start_epoch: int = 2) -> float:
    """Eq. 11's beta as the authors' code computes it (train_tgt_model.py:674-678):

        beta = start + (epoch - w) / (num_epochs - w) * (end - start),   w = update_start_epoch - 1

    w is the code's `update_soft_start` (its warm-up epoch; labels change from epoch w + 1 on,
    TT:320 and 372; train_tgt_model.sh sets WARMUP=1). With 5 epochs that gives 0.9125, 0.875 and
    0.8375 in epochs 2-4: the schedule never reaches `end`, and each step of 1 - beta is
    (num_epochs - 1) / (num_epochs - w) of the paper schedule's. Epochs before w give values
    above `start`, as in the code (no label changes there anyway).
    """
    warmup = update_start_epoch - 1
    if num_epochs < 1 or epoch < 0 or num_epochs <= warmup:
        raise ValueError(f"beta_schedule_authors needs epoch >= 0 and num_epochs > update_start_epoch - 1, got {epoch}, {num_epochs}, {update_start_epoch}")
    return float(start + (epoch - warmup) / (num_epochs - warmup) * (end - start))


BETA_SCHEDULES = {"paper": beta_schedule, "authors": beta_schedule_authors}


# --------------------------------------------------------------------------------------------
# Neighbour bank (Eq. 9's D_z)
# --------------------------------------------------------------------------------------------


def _faiss():
    # faiss' loader tries its AVX512/AVX2 builds first and logs each miss at INFO as a
    # "ModuleNotFoundError" (its logger "faiss.loader"): noise in every training log, not an error.
    loader_log = logging.getLogger("faiss.loader")
    level = loader_log.level
    loader_log.setLevel(max(level, logging.WARNING))
    try:
        import faiss  # imported lazily: glode modules that never search should not pay for it
    finally:
        loader_log.setLevel(level)

    # faiss switches from its scalar loop to BLAS only at >= 128000 queries by default; a training
    # step searches a few hundred to a few thousand, where BLAS is 4-6x faster (bench_target_step).
    faiss.cvar.distance_compute_blas_threshold = 20
    return faiss


def _faiss_has_gpu() -> bool:
    try:
        return _faiss().get_num_gpus() > 0
    except (ImportError, AttributeError):
        return False


class NeighbourBank:
    """The representation repository D_z: bank embeddings [M, D] (float32, L2-normalised) and
    their labels [M] (source gold / target pseudo argmax), searched by exact inner product.

    Search back ends ("auto" picks by the bank's device):
      - "faiss": faiss IndexFlatIP on CPU; when the bank is on CUDA and faiss has GPU support
        (`faiss.get_num_gpus() > 0`), faiss' GpuIndexFlatIP on that GPU (forcing "faiss" on a CUDA
        bank without faiss GPU support searches a CPU copy);
      - "torch": matmul + topk in chunks of queries, on the bank's device (the CUDA default when
        faiss has no GPU support; also runs on CPU, for tests and comparison). A chunk holds
        `chunk_elements` similarities: 2^25 (128 MiB) on the CPU, 2^28 (1 GiB) on CUDA, where
        fewer, larger topk calls made the search 20% faster on an H200 with the same neighbours
        (docs/benchmarks.md, "GPU figures"); the chunking never changes the result.
    k larger than the bank is clamped to the bank size (every span is then a neighbour), so the
    results never hold faiss' -1 "no neighbour" indices.
    """

    def __init__(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        backend: str = "auto",
        chunk_elements: int | None = None,
        normalise: bool = True,
    ):
        if embeddings.ndim != 2 or labels.shape != (embeddings.shape[0],):
            raise ValueError(f"bank needs embeddings [M, D] and labels [M], got {tuple(embeddings.shape)}, {tuple(labels.shape)}")
        if backend not in {"auto", "faiss", "torch"}:
            raise ValueError(f"unknown kNN backend {backend!r}")
        embeddings = embeddings.detach().float()
        # normalise=False only for stored banks: re-normalising unit rows moves the last bits
        self.embeddings = (F.normalize(embeddings, dim=1) if normalise else embeddings).contiguous()
        self.labels = labels.detach().long().to(self.embeddings.device)
        self.backend = backend
        if chunk_elements is None:
            chunk_elements = 1 << 28 if self.embeddings.device.type == "cuda" else 1 << 25
        self.chunk_elements = chunk_elements  # query-chunk size x M for the torch path
        self._index = None
        self._gpu_resources = None

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    @property
    def device(self) -> torch.device:
        return self.embeddings.device

    def _resolved_backend(self) -> str:
        if self.backend != "auto":
            return self.backend
        if self.device.type == "cpu":
            return "faiss"
        return "faiss" if self.device.type == "cuda" and _faiss_has_gpu() else "torch"

    def _faiss_index(self):
        if self._index is None:
            faiss = _faiss()
            dim = self.embeddings.shape[1]
            vectors = self.embeddings.cpu().numpy()
            if self.device.type == "cuda" and _faiss_has_gpu():
                self._gpu_resources = faiss.StandardGpuResources()
                config = faiss.GpuIndexFlatConfig()
                config.device = self.device.index if self.device.index is not None else torch.cuda.current_device()
                self._index = faiss.GpuIndexFlatIP(self._gpu_resources, dim, config)
            else:
                self._index = faiss.IndexFlatIP(dim)
            self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return self._index

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The k nearest bank entries of each query by inner product: (scores [N, k] float32,
        indices [N, k] int64), best first, on the queries' device. k is clamped to len(bank)."""
        k = min(int(k), len(self))
        n = queries.shape[0]
        if k <= 0 or n == 0:
            empty = torch.empty(n, max(k, 0), device=queries.device)
            return empty, empty.long()
        q = queries.detach().float()
        if self._resolved_backend() == "faiss":
            scores_np, indices_np = self._faiss_index().search(np.ascontiguousarray(q.cpu().numpy()), k)
            scores, indices = torch.from_numpy(scores_np), torch.from_numpy(indices_np).long()
        else:
            scores, indices = self._torch_search(q.to(self.device), k)
        return scores.to(queries.device), indices.to(queries.device)

    def _torch_search(self, q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = max(1, self.chunk_elements // max(len(self), 1))
        scores, indices = [], []
        for start in range(0, q.shape[0], rows):  # chunks of queries, not spans: bounds memory
            top = torch.topk(q[start : start + rows] @ self.embeddings.T, k, dim=1)
            scores.append(top.values)
            indices.append(top.indices)
        return torch.cat(scores), torch.cat(indices)

    def neighbour_labels(self, queries: torch.Tensor, k: int) -> torch.Tensor:
        """Labels [N, min(k, M)] of each query's nearest bank entries."""
        _, indices = self.search(queries, k)
        return self.labels.to(indices.device)[indices]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"embeddings": self.embeddings, "labels": self.labels}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], device: torch.device | str | None = None, backend: str = "auto") -> "NeighbourBank":
        embeddings, labels = state["embeddings"], state["labels"]
        if device is not None:
            embeddings, labels = embeddings.to(device), labels.to(device)
        return cls(embeddings, labels, backend=backend, normalise=False)


def build_bank(
    z: torch.Tensor,
    labels: torch.Tensor,
    o_fraction: float = 0.03,
    generator: torch.Generator | None = None,
    backend: str = "auto",
) -> NeighbourBank:
    """A neighbour bank of every entity span and a random `o_fraction` of the O spans.

    The O spans kept are exactly round(o_fraction * #O) of them, drawn without replacement by
    `torch.randperm` with the given CPU generator (seeded -> reproducible), and kept in their
    original order. Labels < 0 (padding) are dropped.
    """
    labels = labels.long()
    entity = (labels > O_CLASS).nonzero().squeeze(1)
    o_spans = (labels == O_CLASS).nonzero().squeeze(1)
    n_keep = int(round(o_fraction * o_spans.numel()))
    pick = torch.randperm(o_spans.numel(), generator=generator)[:n_keep].to(o_spans.device)
    keep = torch.cat([entity, o_spans[pick]]).sort().values
    return NeighbourBank(z[keep], labels[keep], backend=backend)


# --------------------------------------------------------------------------------------------
# Configuration and training-loop state
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class DenoiseOptions:
    use_global: bool = option(True, "global-level decision: prototype scores (off = ablation w/o denoising-global)")
    use_local: bool = option(True, "local-level decision: kNN label scores (off = ablation w/o denoising-local)")
    multiple_directions: bool = option(True, "allow several update directions per span (off = ablation w/o multiple directions)")
    alpha: float = option(0.99, "prototype moving-average rate (Eq. 6)", above=0, below=1)
    k: int = option(300, "neighbours retrieved per span for the local score (Eq. 9)", minimum=1)
    bank_o_fraction: float = option(0.03, "fraction of O spans kept in the neighbour bank (all entity spans are kept)", minimum=0, maximum=1)
    local_threshold_factor: float = option(0.9, "factor on the local threshold (authors' code 0.9; paper 1.0)", above=0)
    normalise_each_direction: bool = option(True, "L1-normalise global and local directions before adding them (Eq. 10; authors' code)")
    update_start_epoch: int = option(2, "first epoch (0-based) whose pseudo labels are updated (authors' code: 2)", minimum=0)
    beta_start: float = option(0.95, "Eq. 11 update rate at the first epoch", above=0, maximum=1)
    beta_end: float = option(0.80, "Eq. 11 update rate at the last epoch", above=0, maximum=1)
    beta_schedule: str = option("paper", "Eq. 11's beta over epochs: paper (start at epoch 0 to end at the last) or authors (train_tgt_model.py:678, counted from the warm-up epoch)", choices=tuple(BETA_SCHEDULES))
    thresholds: str = option("paper", "Eq. 7: paper (global scores under the epoch's last prototypes; empty class +inf) or authors (the scores each step used, one zero row per class; train_tgt_model.py:470-511)", choices=THRESHOLD_FORMS)
    epoch_labels: str = option("refined", "labels of the target spans in the thresholds and the bank: refined (after the step's update) or before_update (train_tgt_model.py:291, 296)", choices=EPOCH_LABELS)

    def beta(self, epoch: int, num_epochs: int) -> float:
        """Eq. 11's beta for an epoch under the configured schedule."""
        if self.beta_schedule == "authors":
            return beta_schedule_authors(epoch, num_epochs, self.beta_start, self.beta_end, self.update_start_epoch)
        return beta_schedule(epoch, num_epochs, self.beta_start, self.beta_end)

    def class_thresholds(self, scores: torch.Tensor, pseudo_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Eq. 7 in the configured form."""
        if self.thresholds == "authors":
            return class_thresholds_with_zero_row(scores, pseudo_labels, num_classes)
        return class_thresholds(scores, pseudo_labels, num_classes)


class Denoiser:
    """State of the global-local denoising mechanism across target-training steps and epochs.

    Timing (authors' code, with the default update_start_epoch=2): prototypes are updated every
    step from epoch 0; global thresholds and the bank are first set at the end of epoch 0; local
    scores can be computed from epoch 1 (against the previous epoch's bank); local thresholds are
    first set at the end of epoch 1; labels are updated from epoch 2 on. An update only happens
    when every enabled decision level is ready (its thresholds, and for local the bank, exist).
    Everything lives on the device of the tensors passed in.
    """

    def __init__(self, num_classes: int, dim: int = 128, config: DenoiseOptions | None = None, device: torch.device | str = "cpu"):
        self.num_classes = num_classes
        self.dim = dim
        self.config = config or DenoiseOptions()
        self.prototypes = torch.zeros(num_classes, dim, device=device)
        self.global_thresholds: torch.Tensor | None = None
        self.local_thresholds: torch.Tensor | None = None
        self.bank: NeighbourBank | None = None

    # -- per step ---------------------------------------------------------------------------

    def observe(self, z: torch.Tensor, labels: torch.Tensor) -> None:
        """Prototype EMA (Eq. 6) over a batch of spans: source spans with gold labels and target
        spans with pseudo labels (argmax), concatenated by the caller in the order seen."""
        self.prototypes = self.prototypes.to(z.device)
        self.prototypes = ema_prototypes(self.prototypes, F.normalize(z.detach().float(), dim=1), labels, self.config.alpha)

    def global_scores(self, z: torch.Tensor) -> torch.Tensor:
        return global_scores(F.normalize(z.detach().float(), dim=1), self.prototypes.to(z.device))

    def local_scores(self, z: torch.Tensor) -> torch.Tensor:
        if self.bank is None:
            raise RuntimeError("local scores need a neighbour bank: call end_epoch first")
        return local_scores(self.bank.neighbour_labels(F.normalize(z.detach().float(), dim=1), self.config.k), self.num_classes)

    def refine(self, z_target: torch.Tensor, p_target: torch.Tensor, epoch: int, num_epochs: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """Denoise a batch of target soft pseudo labels p [N, C] given their spans' z [N, D]
        (Eqs. 8-11). Returns (new p, info). info holds counts: `spans`, `updated` (rows with a
        direction), `changed` (rows whose argmax changed), `changed_to` (list per class), plus
        `beta`, `ready` and the `global_scores`/`local_scores` tensors computed (or None) so a
        caller may collect them for the thresholds."""
        cfg = self.config
        n = p_target.shape[0]
        info: dict[str, Any] = {"spans": n, "updated": 0, "changed": 0, "changed_to": [0] * self.num_classes,
                                "beta": None, "ready": False, "global_scores": None, "local_scores": None,
                                "directions": dict(NO_DIRECTIONS)}
        if not (cfg.use_global or cfg.use_local) or n == 0:
            return p_target, info
        g = self.global_scores(z_target) if cfg.use_global else None
        loc = self.local_scores(z_target) if cfg.use_local and self.bank is not None else None
        info["global_scores"], info["local_scores"] = g, loc
        ready = (not cfg.use_global or self.global_thresholds is not None) and (
            not cfg.use_local or (self.local_thresholds is not None and loc is not None))
        info["ready"] = ready
        if epoch < cfg.update_start_epoch or not ready:
            return p_target, info

        zeros = torch.zeros_like(p_target, dtype=torch.float32)
        d_global = denoising_directions(g, self.global_thresholds.to(g.device), cfg.multiple_directions) if g is not None else zeros
        d_local = denoising_directions(loc, self.local_thresholds.to(loc.device), cfg.multiple_directions) if loc is not None else zeros
        u = merge_directions(d_global, d_local, cfg.normalise_each_direction)
        beta = cfg.beta(epoch, num_epochs)
        p_new = update_pseudo_labels(p_target, u, beta)

        old_top, new_top = p_target.argmax(1), p_new.argmax(1)
        changed = old_top != new_top
        info.update(beta=beta, updated=int((u != 0).any(1).sum()), changed=int(changed.sum()),
                    changed_to=torch.bincount(new_top[changed], minlength=self.num_classes).tolist(),
                    directions=direction_agreement(d_global, d_local))
        return p_new, info

    # -- per epoch --------------------------------------------------------------------------

    def end_epoch(
        self,
        z_target: torch.Tensor,
        pseudo_argmax: torch.Tensor,
        z_source: torch.Tensor,
        source_labels: torch.Tensor,
        generator: torch.Generator | None = None,
        target_local_scores: torch.Tensor | None = None,
        target_global_scores: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """End of an epoch: thresholds (Eq. 7) over all target spans, then a rebuilt bank.

        Global thresholds use the current prototypes, or (`thresholds: authors`, pass
        `target_global_scores`) the scores each step computed under that step's prototypes. Local
        thresholds (times local_threshold_factor) use the local scores of the target spans against
        the bank of the epoch now ending, i.e. the same bank their in-epoch scores were compared
        with; pass `target_local_scores` (e.g. collected from `refine`'s info) to skip that
        search. With no bank yet (end of epoch 0) local thresholds stay unset. The new bank holds
        this epoch's source (gold) and target (`pseudo_argmax`) spans: all entity spans, a seeded
        fraction of O.
        """
        cfg = self.config
        pseudo_argmax = pseudo_argmax.long()
        info: dict[str, Any] = {}
        if cfg.use_global:
            scores = target_global_scores.to(pseudo_argmax.device) if target_global_scores is not None else self.global_scores(z_target)
            self.global_thresholds = cfg.class_thresholds(scores, pseudo_argmax, self.num_classes)
            info["global_thresholds"] = self.global_thresholds.tolist()
        if cfg.use_local and (self.bank is not None or target_local_scores is not None):
            scores = target_local_scores if target_local_scores is not None else self.local_scores(z_target)
            self.local_thresholds = cfg.class_thresholds(scores.to(pseudo_argmax.device), pseudo_argmax, self.num_classes) * cfg.local_threshold_factor
            info["local_thresholds"] = self.local_thresholds.tolist()
        if cfg.use_local:
            z_all = torch.cat([z_source.detach().float().to(z_target.device), z_target.detach().float()])
            labels_all = torch.cat([source_labels.long().to(z_target.device), pseudo_argmax.to(z_target.device)])
            backend = self.bank.backend if self.bank is not None else "auto"
            self.bank = build_bank(z_all, labels_all, cfg.bank_o_fraction, generator, backend=backend)
            info["bank_size"] = len(self.bank)
        log.info("denoise end of epoch: %s", info)
        return info

    # -- checkpointing ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, torch.Tensor]:
        """A flat dict of tensors (torch.save- and safetensors-friendly); unset parts are absent."""
        state = {"prototypes": self.prototypes}
        if self.global_thresholds is not None:
            state["global_thresholds"] = self.global_thresholds
        if self.local_thresholds is not None:
            state["local_thresholds"] = self.local_thresholds
        if self.bank is not None:
            state.update({f"bank.{key}": value for key, value in self.bank.state_dict().items()})
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        prototypes = state["prototypes"]
        if tuple(prototypes.shape) != (self.num_classes, self.dim):
            raise ValueError(f"denoiser state has prototypes {tuple(prototypes.shape)}, expected {(self.num_classes, self.dim)}")
        device = self.prototypes.device
        self.prototypes = prototypes.to(device).clone()
        self.global_thresholds = state["global_thresholds"].to(device).clone() if "global_thresholds" in state else None
        self.local_thresholds = state["local_thresholds"].to(device).clone() if "local_thresholds" in state else None
        if "bank.embeddings" in state:
            backend = self.bank.backend if self.bank is not None else "auto"
            self.bank = NeighbourBank.from_state_dict(
                {"embeddings": state["bank.embeddings"], "labels": state["bank.labels"]}, device=device, backend=backend)
        else:
            self.bank = None
