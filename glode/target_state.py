"""The state one target epoch hands to the next (`glode train-target --state-out` / `--state-in`).

    model/                 the span model as a complete HF directory (config.json, model.safetensors,
                           tokenizer, glode_training.json): the last epoch's is the final model
    optimizer.pt           {"optimizer": AdamW state, "scheduler": LR schedule state}
    denoiser.safetensors   Denoiser.state_dict(): prototypes, global/local thresholds, bank.embeddings,
                           bank.labels (absent with --denoise false)
    rng.pt                 Python, NumPy, torch CPU/CUDA states and the run's named generators
    trainer.json           epoch done, update step, steps per epoch, options, denoise options, classes,
                           sha256 of the labels written, inputs

Written atomically (a killed job leaves no half state). Reading it back checks that it is the
previous epoch's state of the same run: same options (device and num_workers may differ), same
denoise options and classes, and the labels that epoch wrote (sha256 of the probabilities). This
module takes plain data (dicts of options), so it knows nothing of the training loop.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from glode.io import GlodeInputError, atomic_dir, read_json, write_json
from glode.training import capture_rng_state, restore_rng_state, save_model_dir

STATE_FILES = ("model", "optimizer.pt", "rng.pt", "trainer.json")
# Options that may differ between the epochs of one run (they do not change the numbers on a CPU).
RESUMABLE_DIFFERENCES = {"device", "num_workers"}


def labels_digest(probs: np.ndarray) -> str:
    """sha256 of a label store (float32, C order): ties a state to the labels its epoch wrote."""
    return hashlib.sha256(np.ascontiguousarray(probs, dtype=np.float32).tobytes()).hexdigest()


def json_safe(value: Any) -> Any:
    """inf/nan (an unused class's threshold) -> None, so metadata and state stay strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def read_trainer(state_in: Path, epoch: int, options: Mapping, denoise_options: Mapping, classes: list[str], labels_sha: str, labels_in: Path) -> dict:
    """trainer.json of the state epoch E-1 wrote, after checking it belongs to this run.
    `options` and `denoise_options` are the run's settings as JSON-safe dicts."""
    missing = [name for name in STATE_FILES if not (state_in / name).exists()]
    if missing:
        raise GlodeInputError(state_in, f"not a train-target state directory: missing {missing}")
    trainer = read_json(state_in / "trainer.json")
    if trainer["epoch"] != epoch - 1:
        raise GlodeInputError(state_in, f"is the state after epoch {trainer['epoch']}, but epoch {epoch} needs epoch {epoch - 1}'s")
    saved = trainer["options"]
    differs = sorted(k for k in options if k not in RESUMABLE_DIFFERENCES and saved.get(k) != options[k])
    if differs:
        raise GlodeInputError(state_in, "options differ from the run's earlier epochs: " + ", ".join(f"{k} {saved.get(k)!r} -> {options[k]!r}" for k in differs))
    if trainer["denoise_config"] != dict(denoise_options):
        raise GlodeInputError(state_in, f"denoise options differ from the run's earlier epochs: {trainer['denoise_config']} -> {dict(denoise_options)}")
    if trainer["classes"] != classes:
        raise GlodeInputError(state_in, f"classes {trainer['classes']} differ from {classes}")
    if trainer["labels_sha256"] != labels_sha:
        raise GlodeInputError(labels_in, f"are not the labels epoch {epoch - 1} wrote (their sha256 differs from {state_in}/trainer.json)")
    return trainer


def restore_state(state_in: Path, optimizer, scheduler, denoiser, generators: Mapping[str, torch.Generator]) -> None:
    """Load the optimizer, LR schedule, denoiser and random states that epoch E-1 saved.
    The scheduler must be built before: building it would reset the optimizer's initial_lr."""
    saved = torch.load(state_in / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if denoiser is not None:
        from safetensors.torch import load_file

        denoiser.load_state_dict(load_file(str(state_in / "denoiser.safetensors")))
    restore_rng_state(torch.load(state_in / "rng.pt", weights_only=True), generators)


def save_state(out: Path, model, tokenizer, optimizer, scheduler, denoiser, generators: Mapping[str, torch.Generator], trainer: dict, summary: dict,
               final_model: Path | None = None) -> None:
    """Write the state directory `out` atomically (see the module docstring); `final_model`: where
    the workflow will copy its model (named by the model card), when this is the last epoch."""
    from safetensors.torch import save_file

    with atomic_dir(out) as tmp:
        save_model_dir(tmp / "model", model, tokenizer, summary, final_dir=final_model or out / "model")  # complete: the workflow copies it as the final model
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optimizer.pt")
        if denoiser is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in denoiser.state_dict().items()}, str(tmp / "denoiser.safetensors"))
        torch.save(capture_rng_state(generators), tmp / "rng.pt")
        write_json(trainer, tmp / "trainer.json")
