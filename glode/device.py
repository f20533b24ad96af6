"""Device, precision and seeding helpers shared by the training and prediction stages.

`auto` picks CUDA when there is one and then runs the forward pass under bf16 autocast (the
paper's "mixed precision"; bf16 needs no loss scaling), else the CPU in plain fp32. Seeding sets
every generator a run touches; our own random choices (sampling, masking) use explicit
`torch.Generator`s built by `make_generator`, so that they do not depend on how many random
numbers the model's dropout happened to draw before them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random

import numpy as np
import torch

log = logging.getLogger(__name__)


def select_device(spec: str = "auto") -> torch.device:
    """`auto` -> cuda if available, else cpu; anything else is passed to `torch.device`."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested but CUDA is not available")
    return device


def use_bf16(device: torch.device) -> bool:
    """bf16 autocast on CUDA devices that support it; never on the CPU (slow there, and fp32 is the reference)."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def autocast(device: torch.device, enabled: bool | None = None):
    """A bf16 autocast context on CUDA (when `enabled`, default `use_bf16(device)`), else a no-op context."""
    if enabled is None:
        enabled = use_bf16(device)
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def make_generator(seed: int, offset: int = 0) -> torch.Generator:
    """A CPU generator for one purpose (`offset` tells purposes apart under the same run seed)."""
    generator = torch.Generator()
    generator.manual_seed((seed * 1_000_003 + offset) % 2**63)
    return generator


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)}), bf16 autocast={use_bf16(device)}"
    return f"cpu ({torch.get_num_threads()} threads), fp32"
