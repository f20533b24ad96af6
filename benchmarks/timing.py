"""Timing helpers shared by the benchmark scripts (run as `python benchmarks/<script>.py`)."""

from __future__ import annotations

import statistics
import time

import torch


def timed(fn, device: torch.device, repeats: int) -> tuple[float, float]:
    """(median, min) seconds of fn() over `repeats` runs after one warm-up."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def fmt(seconds: tuple[float, float]) -> str:
    med, low = seconds
    return f"{med * 1e3:10.2f} ms  (min {low * 1e3:.2f})"
