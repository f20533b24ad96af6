"""The objectives of the paper, one function per equation, and the contrastive loss of Table 4.

    Eq. 1  span_cross_entropy        L_src: span CE against gold labels, per sentence, then over sentences
    Eq. 2  masked_lm_loss            L_mlm: CE of the masked tokens of X' = mask_tokens(X)
    Eq. 3  source_objective          L_S = L_src + w * L_mlm
    Eq. 4  soft_span_cross_entropy   L_tgt: span CE against the (refined) soft pseudo labels
           soft_cross_entropy_on_probabilities   the authors' code's L_tgt (log_softmax of softmax)
           TargetLossForm            which of the two, and how spans are averaged (per sentence, or flat)
    Eq. 5  target_objective          L_T = L_src + L_tgt + w * L_mlm
           supervised_contrastive_loss   GLoDe_agnostic's replacement of L_mlm (Table 4)

Plain tensor functions: no model, no optimizer, so each has a hand-computed unit test
(tests/test_model.py, tests/test_train_target.py).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
import torch.nn.functional as F

MLM_NORMALISATIONS = ("masked", "tokens")
# L_tgt's input: the span logits (paper Eq. 4), or their softmax probabilities (the authors' code).
TARGET_LOSS_INPUTS = ("logits", "probabilities")
# How span losses become a batch loss: a mean per sentence, then over sentences (paper Eqs. 1, 4),
# or one flat mean over the batch's spans (the authors' code).
LOSS_AVERAGINGS = ("sentence", "span")


def per_sentence_mean(values: torch.Tensor, sentence_index: torch.Tensor, n_sentences: int) -> torch.Tensor:
    """(1/N) sum_X (1/|S(X)|) sum_{s in S(X)} values_s: mean within each sentence, then over sentences.

    Sentences with no element are left out of N (they have no term to average).
    """
    values = values.float()
    sums = torch.zeros(n_sentences, dtype=values.dtype, device=values.device).index_add(0, sentence_index, values)
    counts = torch.zeros(n_sentences, dtype=values.dtype, device=values.device).index_add(0, sentence_index, torch.ones_like(values))
    present = counts > 0
    if not bool(present.any()):
        return values.sum() * 0.0
    return (sums[present] / counts[present]).mean()


def span_mean(values: torch.Tensor, sentence_index: torch.Tensor, n_sentences: int) -> torch.Tensor:
    """(1/|S|) sum_{s in S} values_s: one flat mean over the batch's spans, whatever sentence each
    belongs to (the authors' code: train_tgt_model.py:221-222 and 699). Arguments as
    `per_sentence_mean`, so the two are interchangeable; 0 (with a graph) for no span."""
    values = values.float()
    if values.numel() == 0:
        return values.sum() * 0.0
    return values.mean()


AVERAGE = {"sentence": per_sentence_mean, "span": span_mean}


def span_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, span_sentence: torch.Tensor, n_sentences: int) -> torch.Tensor:
    """Eq. 1: L_src = 1/N sum_X 1/|S(X)| sum_{s_i in S(X)} CE(p_i, y_i), gold class ids `labels`.

    Computed per batch (N = the batch's sentences that have spans): the minibatch estimate of
    the dataset mean. Every sentence weighs the same, however many spans it has.
    """
    losses = F.cross_entropy(logits.float(), labels, reduction="none")
    return per_sentence_mean(losses, span_sentence, n_sentences)


def soft_span_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, span_sentence: torch.Tensor, n_sentences: int) -> torch.Tensor:
    """Eq. 4: L_tgt = 1/N sum_X 1/|S(X)| sum_{s_i in S(X)} CE(p_i, p^_i), soft targets [n_spans, n_classes]."""
    losses = -(targets.float() * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1)
    return per_sentence_mean(losses, span_sentence, n_sentences)


def soft_cross_entropy_on_probabilities(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The authors' code's L_tgt per span: -sum_c q_c log_softmax(softmax(z))_c, [n_spans].

    train_tgt_model.py:59 and 289 turn the span logits into probabilities, :415 passes these to
    the soft-label loss, and :693 applies `log_softmax` to them. Since softmax(z) lies in [0, 1]^C,
    log_softmax of it is bounded: per span the loss lies in [log(e + C - 1) - 1, log(e + C - 1)]
    (5 classes: 0.905 to 1.905), and its gradient vanishes as the span's prediction grows
    confident. Paper Eq. 4 (`soft_span_cross_entropy`) has neither bound.
    """
    probabilities = torch.softmax(logits.float(), dim=-1)
    return -(targets.float() * F.log_softmax(probabilities, dim=-1)).sum(dim=-1)


@dataclasses.dataclass(frozen=True)
class TargetLossForm:
    """How the target stage turns span scores into L_src (Eq. 1) and L_tgt (Eq. 4).

    `loss_input`: "logits" (paper Eq. 4) or "probabilities" (the authors' code,
    `soft_cross_entropy_on_probabilities`); L_src is a cross-entropy on logits either way, as in
    the code (train_tgt_model.py:216). `averaging`: "sentence" (the paper's 1/N sum_X 1/|S(X)|)
    or "span" (the code's flat mean over the batch's spans), for both terms.
    """

    loss_input: str = "logits"
    averaging: str = "sentence"

    def __post_init__(self) -> None:
        if self.loss_input not in TARGET_LOSS_INPUTS:
            raise ValueError(f"target loss input must be one of {TARGET_LOSS_INPUTS}, got {self.loss_input!r}")
        if self.averaging not in LOSS_AVERAGINGS:
            raise ValueError(f"loss averaging must be one of {LOSS_AVERAGINGS}, got {self.averaging!r}")

    def source(self, logits: torch.Tensor, labels: torch.Tensor, span_sentence: torch.Tensor, n_sentences: int) -> torch.Tensor:
        """L_src of the target stage (Eq. 1, averaged as configured)."""
        losses = F.cross_entropy(logits.float(), labels, reduction="none")
        return AVERAGE[self.averaging](losses, span_sentence, n_sentences)

    def target(self, logits: torch.Tensor, targets: torch.Tensor, span_sentence: torch.Tensor, n_sentences: int) -> torch.Tensor:
        """L_tgt (Eq. 4, or the code's form on probabilities), averaged as configured."""
        if self.loss_input == "logits":
            losses = -(targets.float() * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1)
        else:
            losses = soft_cross_entropy_on_probabilities(logits, targets)
        return AVERAGE[self.averaging](losses, span_sentence, n_sentences)


def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    mask_token_id: int,
    special_token_ids: Sequence[int],
    rate: float = 0.25,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """X -> X' for Eq. 2: each real token becomes `<mask>` with probability `rate` (r_m = 0.25).

    Never masks padding (attention_mask 0) or `special_token_ids` (`<s>`, `</s>`, `<pad>`).
    Every chosen token becomes `<mask>` (the authors' form; no BERT-style 80/10/10 split).
    The draw uses `generator` on the CPU, so a seed gives the same masks on any device.
    Returns (masked ids, boolean mask of the masked positions).
    """
    cpu_ids = input_ids.detach().cpu()
    maskable = attention_mask.detach().cpu().bool()
    for special in special_token_ids:
        maskable &= cpu_ids != special
    draw = torch.rand(cpu_ids.shape, generator=generator)
    mask = (draw < rate) & maskable
    masked = cpu_ids.masked_fill(mask, mask_token_id)
    return masked.to(input_ids.device), mask.to(input_ids.device)


def masked_lm_loss(
    logits: torch.Tensor,
    target_ids: torch.Tensor,
    token_sentence: torch.Tensor,
    sentence_lengths: torch.Tensor,
    normalisation: str = "masked",
) -> torch.Tensor:
    """Eq. 2, the MLM loss on target sentences, from the logits at the masked positions.

    `normalisation="masked"` (default, the authors' code): mean CE over all masked tokens of the
    batch. `"tokens"` (the paper's formula): per sentence, the sum of CE over its masked tokens
    divided by |X'|, its number of maskable tokens (`sentence_lengths`, without `<s>`/`</s>`),
    then the mean over the batch's sentences. Returns 0 when nothing was masked.
    """
    if normalisation not in MLM_NORMALISATIONS:
        raise ValueError(f"mlm normalisation must be one of {MLM_NORMALISATIONS}, got {normalisation!r}")
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    losses = F.cross_entropy(logits.float(), target_ids, reduction="none")
    if normalisation == "masked":
        return losses.mean()
    per_sentence = torch.zeros(sentence_lengths.shape[0], dtype=losses.dtype, device=losses.device).index_add(0, token_sentence, losses)
    return (per_sentence / sentence_lengths.clamp(min=1).to(losses.dtype)).mean()


def source_objective(loss_src: torch.Tensor, loss_mlm: torch.Tensor, mlm_weight: float) -> torch.Tensor:
    """Eq. 3: the source model's loss L_S = L_src + w * L_mlm."""
    return loss_src + mlm_weight * loss_mlm


def target_objective(loss_src: torch.Tensor, loss_tgt: torch.Tensor, loss_aux: torch.Tensor, aux_weight: float) -> torch.Tensor:
    """Eq. 5: the target model's loss L_T = L_src + L_tgt + w * L_mlm.

    `loss_aux` is L_mlm for GLoDe; for GLoDe_agnostic (Table 4) it is the supervised contrastive
    loss that replaces it, and zero for the ablation "w/o mlm".
    """
    return loss_src + loss_tgt + aux_weight * loss_aux


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
