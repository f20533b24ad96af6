"""`glode frozen-states`: the output of the frozen bottom encoder layers for every sentence, once.

Where training freezes the word embeddings and all but the top `train_top_layers` encoder layers
(a CPU economy, docs/scales.md), the bottom layers' output for a sentence never changes: it
depends only on the pretrained weights. With `cache_frozen_layers: true` the workflow computes it
once per train split (this stage) and every training job that reads the split (the source model,
every target epoch of every variant) feeds it to the top layers instead of running the bottom
ones again. The MLM pass (masked inputs) still runs the whole encoder.

What changes in training: nothing in eval mode (the top layers receive the same hidden states,
up to the last float bits of a different batch padding); in training mode the frozen layers'
dropout is gone (their output is the eval-mode one), so same-seed results differ from the
uncached run. docs/scales.md gives the measured F1 effect.

The file (safetensors): `hidden` [total subwords, hidden] float32 (every sentence's windowed
subwords, concatenated in file order), `offsets` [n + 1] int64 (sentence i is
hidden[offsets[i]:offsets[i+1]]), `sent_id` [n] int64; metadata `glode_frozen_states` (JSON):
depth (cached layers), weights_sha256 (embeddings + bottom layers, `SpanModel.frozen_weights_digest`),
backbone, encoder_layers, train_top_layers, max_seq_len, sentences. A training job checks the
digest against its own model's frozen part, so a cache never feeds a model it was not made by.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from glode.io import GlodeInputError, atomic_path, setup_logging

log = logging.getLogger(__name__)
_META_KEY = "glode_frozen_states"


@torch.inference_mode()
def compute_frozen_states(model, items: list[dict], depth: int, batch_size: int, device: torch.device, pad_token_id: int, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(hidden [total subwords, H] float32 in item order, offsets [n + 1]) of the bottom `depth` layers, eval mode."""
    from tqdm.auto import tqdm

    from glode.batching import make_loader

    model.eval()
    lengths = np.array([len(it["input_ids"]) for it in items], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    hidden = np.zeros((int(offsets[-1]), model.config.encoder_config["hidden_size"]), dtype=np.float32)
    loader, _ = make_loader(items, batch_size, pad_token_id, shuffle=False)
    for batch in tqdm(loader, desc="frozen-states", unit="batch", disable=not progress):
        rows = batch["sentence_rows"].tolist()
        states = model.encode_bottom(batch["input_ids"].to(device), batch["attention_mask"].to(device), depth).float().cpu().numpy()
        for b, row in enumerate(rows):
            hidden[offsets[row] : offsets[row + 1]] = states[b, : lengths[row]]
    return hidden, offsets


def write_frozen_states(path: os.PathLike | str, hidden: np.ndarray, offsets: np.ndarray, sent_ids: np.ndarray, meta: dict) -> None:
    from safetensors.numpy import save_file

    with atomic_path(path) as tmp:
        save_file({"hidden": hidden, "offsets": offsets.astype(np.int64), "sent_id": sent_ids.astype(np.int64)}, str(tmp), metadata={_META_KEY: json.dumps(meta)})


def frozen_part(model) -> tuple[int, str]:
    """(depth, weights sha256) of a model's frozen bottom: what a cache must have been made by.
    Hashing the embeddings takes a moment, so a job computes this once for all its caches."""
    depth = model.frozen_depth()
    return depth, model.frozen_weights_digest(depth)


def attach_frozen_states(items: list[dict], path: os.PathLike | str, model, expected: tuple[int, str] | None = None) -> int:
    """Give every item its cached bottom-layer output (`frozen_hidden`), after checking that the
    cache was made by this model's frozen part (`expected`, default `frozen_part(model)`) and for
    these windowed sentences; returns the depth."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads((f.metadata() or {})[_META_KEY])
        tensors = load_file(str(path))
    except (OSError, KeyError, ValueError) as err:
        raise GlodeInputError(path, f"not a `glode frozen-states` file: {err}") from None
    depth = int(meta["depth"])
    model_depth = expected[0] if expected is not None else model.frozen_depth()
    if depth != model_depth:
        raise GlodeInputError(path, f"caches {depth} bottom layers, but the model being trained has {model_depth} frozen")
    digest = expected[1] if expected is not None else model.frozen_weights_digest(depth)
    if meta["weights_sha256"] != digest:
        raise GlodeInputError(path, "was made by other frozen weights than this model's (another backbone, or a source model that trained them)")
    hidden, offsets = tensors["hidden"], tensors["offsets"]
    position = {int(s): i for i, s in enumerate(tensors["sent_id"].tolist())}
    for item in items:
        i = position.get(item["sent_id"])
        if i is None:
            raise GlodeInputError(path, f"has no sentence {item['sent_id']}: made from another sentences file?")
        if offsets[i + 1] - offsets[i] != len(item["input_ids"]):
            raise GlodeInputError(path, f"sentence {item['sent_id']}: {offsets[i + 1] - offsets[i]} cached subwords, {len(item['input_ids'])} in the window: another tokenizer or max_seq_len?")
        item["frozen_hidden"] = hidden[offsets[i] : offsets[i + 1]]
    return depth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glode frozen-states", description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", required=True, type=Path, help="sentences Parquet (a train split)")
    parser.add_argument("--spans", required=True, type=Path, help="its spans Parquet (for the window, max_seq_len)")
    parser.add_argument("--backbone", required=True, help="Hugging Face encoder directory")
    parser.add_argument("--encoder-layers", type=int, default=0, help="as the training stages: keep the backbone's bottom N layers (0 = all)")
    parser.add_argument("--train-top-layers", type=int, required=True, help="as the training stages: the top N layers train, the rest are cached")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per batch")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--out", required=True, type=Path, help="safetensors file to write")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)
    import sys

    from glode.batching import build_items
    from glode.data import load_sentences
    from glode.device import select_device
    from glode.model import SpanModel, load_tokenizer
    from glode.spans import read_span_settings

    if args.train_top_layers < 1:
        raise ValueError("--train-top-layers must be >= 1: with every layer trained there is nothing to cache")
    device = select_device(args.device)
    model = SpanModel.from_backbone(args.backbone, ["O"], encoder_layers=args.encoder_layers).to(device)
    model.freeze_encoder_parts(True, args.train_top_layers)
    depth, digest = frozen_part(model)
    sentences = load_sentences(args.sentences)
    window = read_span_settings(args.spans).max_seq_len
    tokenizer = load_tokenizer(args.backbone)
    items = build_items(sentences, tokenizer, window)
    hidden, offsets = compute_frozen_states(model, items, depth, args.batch_size, device, tokenizer.pad_token_id, progress=sys.stderr.isatty())
    meta = {"depth": depth, "weights_sha256": digest, "backbone": str(args.backbone), "encoder_layers": args.encoder_layers,
            "train_top_layers": args.train_top_layers, "max_seq_len": window, "sentences": str(args.sentences)}
    write_frozen_states(args.out, hidden, offsets, sentences["sent_id"].to_numpy(dtype=np.int64), meta)
    log.info("%s: bottom %d layers of %d sentences (%d subwords, %.0f MB) -> %s", args.sentences, depth, len(items), len(hidden), hidden.nbytes / 2**20, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
