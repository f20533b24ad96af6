"""Cost of decoding span predictions into entities (`glode.evaluate.decode_entities`).

Every evaluation and `glode tag` run decodes one row per candidate span: a test file of 10,000
sentences of 14 words has 500,000 spans of <= 4 words. The input is synthetic (random class
distributions over O + 4 entity types), which is the hard case: about four in five spans are
entities, so the sequential greedy part sees most rows. Medians over --repeats runs after one
warm-up, in this one process.

Usage: .venv/bin/python benchmarks/bench_decode.py [--sentences 10000] [--words 14] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timing import fmt, timed  # noqa: E402  (benchmarks/timing.py: the script's folder is on sys.path)

from glode.evaluate import decode_entities  # noqa: E402
from glode.testing import random_span_predictions  # noqa: E402

CLASSES = ["O", "PER", "LOC", "ORG", "MISC"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=10_000)
    parser.add_argument("--words", type=int, default=14)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}")
    predictions = random_span_predictions(args.sentences, args.words, CLASSES)
    entity_rows = int((predictions[[f"p_{c}" for c in CLASSES]].to_numpy().argmax(axis=1) != 0).sum())
    print(f"{len(predictions):,} spans over {args.sentences:,} sentences; {entity_rows:,} with an entity argmax")
    seconds = timed(lambda: decode_entities(predictions, CLASSES), torch.device("cpu"), args.repeats)
    print(f"decode_entities: {fmt(seconds)}  ({len(predictions) / seconds[0] / 1e6:.2f} M spans/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
