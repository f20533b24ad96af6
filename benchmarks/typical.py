"""Typical training batches for the step benchmarks (imported by bench_*_step.py; not a script).

Training draws its batches with `glode.batching.LengthBucketBatchSampler` (shuffle=True, seeded
by `glode.training.sampler_seed(seed, stream)`): sentences of similar length go together, so a
batch is padded to far fewer subwords than the longest sentences of the file. `typical_batches`
replays the sampler's first pass over a train file and returns the full batches of median padded
length (one, or a few around the median), which is what a step costs on average far better than
the file's first N sentences do.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA = PROJECT_ROOT.parent / "shared" / "datasets" / "conll"
DEFAULT_BACKBONE = PROJECT_ROOT / "resources" / "multilingual-e5-small"
ENTITY_TYPES = ["PER", "LOC", "ORG", "MISC"]
CLASSES = ["O", *ENTITY_TYPES]
MAX_SEQ_LEN = 128  # the span tables' window (glode.spans default)
MAX_SPAN_LEN = 4
# streams of glode.training.sampler_seed: train_source / train_target use 0 for the source order, 1 for the target order
SOURCE_ORDER, TARGET_ORDER = 0, 1


def read_train(lang: str):
    """The CoNLL train file of `lang` as a sentences frame (sent_id, line, tokens, tags)."""
    import pandas as pd

    from glode.conll import read_conll

    parsed = read_conll(DATA / lang / "train.txt", ENTITY_TYPES)
    return pd.DataFrame([{"sent_id": i, "line": s.line, "tokens": s.tokens, "tags": s.tags} for i, s in enumerate(parsed.sentences)])


@dataclass
class BatchChoice:
    indices: list[list[int]]  # rows of the frame, one list per chosen batch
    padded: list[int]  # padded length of each chosen batch
    all_padded: list[int]  # padded length of every full batch of the pass

    def describe(self) -> str:
        q = np.percentile(self.all_padded, [25, 50, 75])
        return (f"padded length {'/'.join(map(str, self.padded))} (the pass's {len(self.all_padded)} full batches: "
                f"quartiles {q[0]:.0f}/{q[1]:.0f}/{q[2]:.0f}, mean {statistics.fmean(self.all_padded):.1f}, max {max(self.all_padded)})")


def typical_batches(frame, tokenizer, batch_size: int, seed: int, stream: int, count: int = 1, pick: str = "median") -> BatchChoice:
    """`count` full batches among those the training sampler yields in its first pass (epoch 0)
    over `frame`, sorted by padded length (ties by pass order): `median` -- the middle `count`;
    `mean` -- the `count` whose padded length is nearest the pass's mean (the length that
    predicts the average step's cost, since a step's cost grows about linearly with it)."""
    from glode.batching import LengthBucketBatchSampler, build_items
    from glode.training import sampler_seed

    lengths = [len(item["input_ids"]) for item in build_items(frame, tokenizer, MAX_SEQ_LEN)]
    sampler = LengthBucketBatchSampler(lengths, batch_size, shuffle=True, seed=sampler_seed(seed, stream))
    sampler.set_epoch(0)
    batches = [b for b in sampler.batches() if len(b) == batch_size]
    padded = [max(lengths[i] for i in b) for b in batches]
    order = sorted(range(len(batches)), key=lambda j: padded[j])
    if pick == "median":
        start = max(0, (len(order) - count) // 2)
        chosen = order[start : start + count]
    elif pick == "mean":
        mean = statistics.fmean(padded)
        chosen = sorted(order, key=lambda j: (abs(padded[j] - mean), padded[j]))[:count]
    else:
        raise ValueError(f"pick must be median or mean, got {pick!r}")
    return BatchChoice([batches[j] for j in chosen], [padded[j] for j in chosen], padded)


def batch_items(frame, rows: list[int], tokenizer, labeled: bool):
    """Items (glode.batching.build_items) of the sentences `rows` of `frame`, with their spans
    (<= 4 words) and gold labels when `labeled`; returns (items, spans frame)."""
    from glode.batching import build_items
    from glode.spans import build_span_table

    sub = frame.iloc[rows].reset_index(drop=True)
    if not labeled:
        sub = sub.drop(columns=["tags"])
    spans, _ = build_span_table(sub, tokenizer, MAX_SPAN_LEN, MAX_SEQ_LEN)
    return build_items(sub, tokenizer, MAX_SEQ_LEN, spans, CLASSES if labeled else None), spans


def attach_frozen_hidden(model, items: list[dict], depth: int, pad_token_id: int, device) -> None:
    """Give each item its bottom-`depth`-layer output (`frozen_hidden`, float32 numpy), computed
    once with `SpanModel.encode_bottom` in eval mode, as `glode frozen-states` does; the model is
    left in train mode."""
    import torch

    from glode.batching import SpanCollator

    batch = SpanCollator(pad_token_id)(items)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        states = model.encode_bottom(batch["input_ids"].to(device), batch["attention_mask"].to(device), depth).float().cpu().numpy()
    model.train(was_training)
    for b, item in enumerate(items):
        item["frozen_hidden"] = states[b, : len(item["input_ids"])].copy()


def resolve_backbone(backbone: str | None, tmp: Path) -> str:
    """--backbone, else resources/multilingual-e5-small when built, else a tiny random BERT."""
    if backbone:
        return backbone
    if (DEFAULT_BACKBONE / "config.json").exists():
        return str(DEFAULT_BACKBONE)
    from glode.testing import build_tiny_backbone

    return str(build_tiny_backbone(tmp / "tiny"))


def machine_lines() -> list[str]:
    """nproc, CPU model and bf16 support, load average, library versions."""
    import os
    import platform

    import torch
    import transformers

    from glode.device import cpu_supports_bf16

    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    lines = [
        f"CPU: {model}; {os.cpu_count()} cores visible, {usable} usable, torch threads {torch.get_num_threads()}, native bf16: {cpu_supports_bf16()}",
        f"load average (1/5/15 min) at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, {platform.platform()}",
    ]
    if torch.cuda.is_available():
        lines.append(f"CUDA: {torch.cuda.get_device_name(0)}")
    return lines


def load_line(when: str) -> str:
    import os

    return f"load average (1/5/15 min) {when}: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
