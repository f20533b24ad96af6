"""Run health without gold: how far a target epoch drifted, in measures that hold under either
form of the target loss (glode.objectives.TargetLossForm).

Two of the 18 CoNLL runs of the first six-target study ran away inside one epoch: labels and model
fed each other entity mass on O spans (docs/results.md). Seen from the training alone:

* the target loss of Eq. 4 climbs within the epoch (`loss_climb`: the mean of its last tenth of
  updates over its first tenth). Normal runs stayed at or below 2.3x, the two runaways reached
  5.5x and 11.6x. The authors' bounded loss (on probabilities) stays near its floor whatever
  happens, so it needs a second measure:
* the pseudo labels' entity mass (sum over spans of 1 - p_O) grows within the epoch
  (`entity_mass_growth`: at the epoch's end over its start). In the 12 diagnosed runs of
  docs/study/diagnosis a normal epoch grew it by at most 1.32x, the runaways' epochs by 1.97x
  and 2.04x (es seed 1, epochs 2 and 3) and 2.25x (de seed 2, epoch 4).
* the model's own entity predictions during the epoch (`predicted_entity_ratio`: spans whose
  argmax is not O over the initial labels' entity spans) is logged for runs whose labels cannot
  move (w/o denoising); no limit is set on it, for lack of measured runaways to set one from.

The limits (3.0 and 1.5) sit between the normal and the runaway values above; they were chosen
from those committed label files and training logs, never from target test data. A run past a
limit warns in its log and its model card; it stops only with `health_stop`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

LOSS_PARTS = 10


def loss_part_means(losses: Sequence[float], parts: int = LOSS_PARTS) -> list[float]:
    """The mean of each of `parts` consecutive, near-equal runs of the values (np.array_split)."""
    if len(losses) < parts:
        raise ValueError(f"{len(losses)} values, fewer than the {parts} parts to split them in")
    return [float(np.mean(chunk)) for chunk in np.array_split(np.asarray(losses, dtype=np.float64), parts)]


def loss_climb(losses: Sequence[float], parts: int = LOSS_PARTS) -> float | None:
    """The last part's mean loss over the first part's; None with fewer updates than parts or a
    first part of zero loss."""
    if len(losses) < parts:
        return None
    means = loss_part_means(losses, parts)
    return means[-1] / means[0] if means[0] > 0 else None


def entity_mass(probabilities: np.ndarray) -> float:
    """The soft labels' probability mass on entity classes, sum_i (1 - p_i,O) (class 0 is O)."""
    return float(np.sum(1.0 - probabilities[:, 0].astype(np.float64)))


@dataclasses.dataclass(frozen=True)
class HealthLimits:
    max_loss_climb: float = 3.0
    max_mass_growth: float = 1.5

    def problems(self, measures: dict) -> list[str]:
        """One sentence per measure past its limit (a limit of 0 is off)."""
        found = []
        climb, growth = measures.get("loss_climb"), measures.get("entity_mass_growth")
        if self.max_loss_climb > 0 and climb is not None and climb > self.max_loss_climb:
            found.append(f"the target loss climbed {climb:.1f}x within the epoch (limit {self.max_loss_climb:g}x)")
        if self.max_mass_growth > 0 and growth is not None and growth > self.max_mass_growth:
            found.append(f"the pseudo labels' entity mass grew {growth:.2f}x within the epoch (limit {self.max_mass_growth:g}x)")
        return found


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 and math.isfinite(a) else None


def epoch_health(target_losses: Sequence[float], mass_start: float, mass_end: float, mass_initial: float,
                 predicted_entities: int, initial_entities: int, limits: HealthLimits) -> dict:
    """The epoch's drift measures and the limits they broke (`problems`, empty when healthy)."""
    measures = {
        "loss_climb": loss_climb(target_losses),
        "entity_mass_start": mass_start,
        "entity_mass_end": mass_end,
        "entity_mass_initial": mass_initial,
        "entity_mass_growth": _ratio(mass_end, mass_start),
        "entity_mass_vs_initial": _ratio(mass_end, mass_initial),
        "predicted_entities": int(predicted_entities),
        "initial_entities": int(initial_entities),
        "predicted_entity_ratio": _ratio(float(predicted_entities), float(initial_entities)),
        "limits": dataclasses.asdict(limits),
    }
    measures["problems"] = limits.problems(measures)
    return measures
