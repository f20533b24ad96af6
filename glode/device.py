"""Device, precision and seeding helpers shared by the training and prediction stages.

`auto` picks CUDA when there is one and then runs the forward pass under bf16 autocast (the
paper's "mixed precision"; bf16 needs no loss scaling), else the CPU in plain fp32. Seeding sets
every generator a run touches; our own random choices (sampling, masking) use explicit
`torch.Generator`s built by `make_generator`, so that they do not depend on how many random
numbers the model's dropout happened to draw before them.
"""

from __future__ import annotations

import contextlib
import functools
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


PRECISIONS = ("auto", "bf16", "fp32")
# What `select_device` accepts (the config schema and the stages' flags check it up front).
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"


@functools.lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX): elsewhere CPU autocast is slow.
    Asked once per process: autocast is entered on every training step."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def use_bf16(device: torch.device, precision: str = "auto") -> bool:
    """bf16 autocast or not: `auto` means on CUDA devices that support it (the paper's mixed
    precision), never on the CPU (fp32 is the reference there); `bf16` on any device that
    supports it; `fp32` never."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return False
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if precision == "bf16":
        if not cpu_supports_bf16():
            _warn_no_cpu_bf16()
        return cpu_supports_bf16()
    return False


@functools.lru_cache(maxsize=1)
def _warn_no_cpu_bf16() -> None:
    """Once per process, not once per training step."""
    log.warning("precision bf16: this CPU has no native bf16 support; running fp32")


def autocast(device: torch.device, precision: str = "auto"):
    """A bf16 autocast context where `use_bf16(device, precision)`, else a no-op context."""
    if use_bf16(device, precision):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
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


def describe_device(device: torch.device, precision: str = "auto") -> str:
    dtype = "bf16 autocast" if use_bf16(device, precision) else "fp32"
    if device.type == "cuda":
        return f"cuda:{device.index or 0} ({torch.cuda.get_device_name(device)}), {dtype}"
    return f"cpu ({torch.get_num_threads()} threads), {dtype}"
