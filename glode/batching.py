"""Sentences + spans -> per-sentence items -> length-bucketed, padded batches.

An item holds one sentence's subword ids (cut to the encoder window exactly as
`glode.spans.word_subword_bounds` assumes: the first `max_seq_len - 1` positions, then `</s>`)
and its candidate spans as subword positions, word widths and case classes, plus the spans'
gold class ids or soft targets when there are any. Batches are built from sentences of similar
length (mean CoNLL sentence: 23 subwords), so nothing is padded to 128.

Everything here is deterministic: the sampler's order depends only on (seed, epoch).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from torch.utils.data import Sampler

from glode.io import GlodeInputError
from glode.model import MORPH_PAD, subword_width_bucket
from glode.span_limit import DEFAULT_MAX_SPAN_LEN
from glode.spans import encode_words, sentence_tokenisation, word_subword_bounds


def read_spans(path: os.PathLike | str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A spans Parquet as a DataFrame, `morph` kept Arrow-backed (fast to pad, little memory).

    Any pandas metadata in the file is ignored: files written before `glode.io.write_parquet`
    dropped it name dtypes (`list<item: int8>[pyarrow]`) that pandas 3 cannot parse back.
    """
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=list(columns) if columns else None)
    except (OSError, pa.ArrowInvalid) as err:
        raise GlodeInputError(path, f"cannot read as Parquet: {err}") from None
    missing = {"sent_id", "start", "end"} - set(table.column_names)
    if missing:
        raise GlodeInputError(path, f"not a spans file: missing columns {sorted(missing)}")
    # list columns (morph) stay Arrow-backed: converting ~1M small lists to Python objects is slow
    return table.to_pandas(ignore_metadata=True, types_mapper=lambda t: pd.ArrowDtype(t) if pa.types.is_list(t) else None)


def padded_morph(spans: pd.DataFrame, max_span_len: int, path: os.PathLike | str = "<spans>") -> np.ndarray:
    """The spans' `morph` lists as an int64 [n_spans, max_span_len] array padded with MORPH_PAD."""
    column = pa.Table.from_pandas(spans[["morph"]], preserve_index=False).column("morph").combine_chunks()
    offsets = column.offsets.to_numpy()
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    lengths = np.diff(offsets)
    if len(lengths) and lengths.max() > max_span_len:
        row = int(np.argmax(lengths > max_span_len))
        raise GlodeInputError(path, f"row {row}: span of {lengths[row]} words, longer than max_span_len={max_span_len}")
    if len(values) and (values.min() < 0 or values.max() >= MORPH_PAD):
        raise GlodeInputError(path, f"morph classes must be 0..{MORPH_PAD - 1}")
    out = np.full((len(lengths), max_span_len), MORPH_PAD, dtype=np.int64)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    slots = np.arange(len(values)) - np.repeat(offsets[:-1], lengths)
    out[rows, slots] = values
    return out


def build_items(
    sentences: pd.DataFrame,
    tokenizer,
    max_seq_len: int = 128,
    spans: pd.DataFrame | None = None,
    classes: Sequence[str] | None = None,
    soft_targets: np.ndarray | None = None,
    max_span_len: int = DEFAULT_MAX_SPAN_LEN,
    spans_path: os.PathLike | str = "<spans>",
) -> list[dict]:
    """One item per sentence (in `sentences` order).

    Each item: `row` (position in `sentences`), `sent_id`, `input_ids` (int64, windowed), and,
    when `spans` is given, its spans: `span_rows` (their row positions in `spans`, to put
    predictions back), `span_start`/`span_end` (first/last subword), `span_width` (words),
    `span_morph` [k, max_span_len]; `labels` (class ids, when `classes` is given and the spans
    carry labels) and `targets` ([k, n_classes] rows of `soft_targets`, aligned with `spans`).
    """
    encoded = encode_words(tokenizer, sentences["tokens"].tolist(), sentence_tokenisation(sentences))
    sent_ids = sentences["sent_id"].to_numpy(dtype=np.int64)
    items: list[dict] = []
    bounds_per_sentence: list[tuple[np.ndarray, np.ndarray]] = []
    for row, tokens in enumerate(sentences["tokens"].tolist()):
        item, bounds = windowed_sentence(encoded, row, len(tokens), int(sent_ids[row]), max_seq_len)
        items.append(item)
        bounds_per_sentence.append(bounds)
    if spans is None:
        return items

    columns = _span_columns(spans, sent_ids, classes, soft_targets, max_span_len, spans_path)
    # group the span rows by sentence in one sort; stable, so each sentence keeps its spans' order
    order = np.argsort(columns.sentence_row, kind="stable")
    cuts = np.searchsorted(columns.sentence_row[order], np.arange(len(items) + 1))
    for row, item in enumerate(items):
        rows = order[cuts[row] : cuts[row + 1]]
        first, last = bounds_per_sentence[row]
        item.update(_sentence_spans(item["sent_id"], rows, first, last, columns, soft_targets, max_seq_len, spans_path))
    return items


def windowed_sentence(encoded, row: int, n_words: int, sent_id: int, max_seq_len: int) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """One sentence's span-less item, cut to the window, and its words' first/last subwords.

    A word's subwords are -1 when the window cut it off (`glode.spans.word_subword_bounds`).
    """
    ids = list(encoded["input_ids"][row])
    if len(ids) > max_seq_len:
        ids = ids[: max_seq_len - 1] + ids[-1:]  # keep </s> in the last slot
    bounds = word_subword_bounds(encoded.word_ids(row), n_words, max_seq_len)
    first = np.array([b[0] if b else -1 for b in bounds], dtype=np.int64)
    last = np.array([b[1] if b else -1 for b in bounds], dtype=np.int64)
    item = {"row": row, "sent_id": sent_id, "input_ids": np.asarray(ids, dtype=np.int64), "n_words": n_words}
    return item, (first, last)


@dataclass(slots=True)
class _SpanColumns:
    """The spans table as checked arrays, one entry per row of `spans` (in its order)."""

    sentence_row: np.ndarray  # position of the span's sentence in `sentences`
    starts: np.ndarray  # first word
    ends: np.ndarray  # last word
    widths: np.ndarray  # words
    morph: np.ndarray  # [n_spans, max_span_len]
    labels: np.ndarray | None  # class ids


def _span_columns(
    spans: pd.DataFrame,
    sent_ids: np.ndarray,
    classes: Sequence[str] | None,
    soft_targets: np.ndarray | None,
    max_span_len: int,
    spans_path: os.PathLike | str,
) -> _SpanColumns:
    """Check the spans against the sentences and `max_span_len`, and take out their columns."""
    row_of_sent = pd.Series(np.arange(len(sent_ids)), index=sent_ids)
    if not row_of_sent.index.is_unique:
        raise GlodeInputError(spans_path, "the sentences file repeats a sent_id")
    span_sent = spans["sent_id"].to_numpy(dtype=np.int64)
    sentence_row = row_of_sent.reindex(span_sent).to_numpy()
    # reindex gives NaN for a sent_id the sentences file lacks
    if np.isnan(sentence_row.astype(np.float64)).any():
        bad = int(np.flatnonzero(np.isnan(sentence_row.astype(np.float64)))[0])
        raise GlodeInputError(spans_path, f"row {bad}: sent_id {span_sent[bad]} is not in the sentences file")
    sentence_row = sentence_row.astype(np.int64)
    starts = spans["start"].to_numpy(dtype=np.int64)
    ends = spans["end"].to_numpy(dtype=np.int64)
    widths = spans["width"].to_numpy(dtype=np.int64) if "width" in spans.columns else ends - starts + 1
    if ((widths < 1) | (widths > max_span_len) | (widths != ends - starts + 1)).any():
        bad = int(np.flatnonzero((widths < 1) | (widths > max_span_len) | (widths != ends - starts + 1))[0])
        raise GlodeInputError(spans_path, f"row {bad}: span ({starts[bad]}, {ends[bad]}) width {widths[bad]} is not 1..{max_span_len}")
    morph = padded_morph(spans, max_span_len, spans_path)
    labels = _label_ids(spans, classes, spans_path)
    if soft_targets is not None and len(soft_targets) != len(spans):
        raise ValueError(f"{len(soft_targets)} soft target rows for {len(spans)} spans")
    return _SpanColumns(sentence_row, starts, ends, widths, morph, labels)


def _label_ids(spans: pd.DataFrame, classes: Sequence[str] | None, spans_path: os.PathLike | str) -> np.ndarray | None:
    """The spans' labels as class ids; None without `classes` or when no span has a label."""
    if classes is None or "label" not in spans.columns or spans["label"].isna().all():
        return None
    if spans["label"].isna().any():
        raise GlodeInputError(spans_path, "some spans have a null label")
    index = {c: i for i, c in enumerate(classes)}
    as_str = spans["label"].astype(str)
    unknown = sorted(set(as_str.unique()) - set(index))
    if unknown:
        raise GlodeInputError(spans_path, f"labels {unknown} are not among the classes {list(classes)}")
    return as_str.map(index).to_numpy(dtype=np.int64)


def _sentence_spans(
    sent_id: int,
    rows: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    columns: _SpanColumns,
    soft_targets: np.ndarray | None,
    max_seq_len: int,
    spans_path: os.PathLike | str,
) -> dict[str, np.ndarray]:
    """The span arrays of one sentence's item: its spans are `rows` of the spans table.

    `first`/`last` are the sentence's words' first/last subwords (-1 beyond the window).
    """
    starts, ends = columns.starts, columns.ends
    s, e = starts[rows], ends[rows]
    if len(rows) and (s.min() < 0 or e.max() >= len(first)):
        raise GlodeInputError(spans_path, f"sentence {sent_id}: a span lies outside its {len(first)} words")
    sub_start, sub_end = first[s], last[e]
    if (sub_start < 0).any() or (sub_end < 0).any():
        bad = int(rows[np.flatnonzero((sub_start < 0) | (sub_end < 0))[0]])
        raise GlodeInputError(
            spans_path,
            f"row {bad}: span ({starts[bad]}, {ends[bad]}) of sentence {sent_id} is outside the encoder window "
            f"of {max_seq_len} subwords (spans built with another tokenizer or max_seq_len?)",
        )
    out = {"span_rows": rows, "span_start": sub_start, "span_end": sub_end, "span_width": columns.widths[rows], "span_morph": columns.morph[rows]}
    if columns.labels is not None:
        out["labels"] = columns.labels[rows]
    if soft_targets is not None:
        out["targets"] = np.asarray(soft_targets[rows], dtype=np.float32)
    return out


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Batches of items of similar length, in a seeded order.

    Training (`shuffle=True`): shuffle all items with a generator seeded by (seed, epoch), cut
    the permutation into pools of `batch_size * pool_batches` items, sort each pool by length,
    cut it into batches, and shuffle the order of all batches. So batches have similar lengths
    (little padding) but a different composition every epoch. Prediction (`shuffle=False`):
    all items sorted by length (stable), then cut into batches.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool = True, seed: int = 0, pool_batches: int = 50, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.pool_batches = max(1, pool_batches)
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            batches = [order[i : i + bs] for i in range(0, n, bs)]
        else:
            rng = np.random.default_rng([self.seed, self.epoch])
            perm = rng.permutation(n)
            pool = bs * self.pool_batches
            batches = []
            for p in range(0, n, pool):
                chunk = perm[p : p + pool]
                chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
                batches += [chunk[i : i + bs] for i in range(0, len(chunk), bs)]
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.drop_last:
            batches = [b for b in batches if len(b) == bs]
        return [b.tolist() for b in batches]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        n = len(self.lengths)
        if not self.drop_last:
            return math.ceil(n / self.batch_size)
        if not self.shuffle:
            return n // self.batch_size
        return len(self.batches())


class SpanCollator:
    """Items -> a batch of tensors.

    `input_ids`, `attention_mask` [B, T] (T = the batch's longest item), `sentence_rows` [B],
    `n_maskable` [B] (tokens without `<s>`/`</s>`, the |X'| of Eq. 2); for span items the flat
    span tensors [N]: `span_sentence` (index of the span's sentence in the batch), `span_start`,
    `span_end` (subwords), `span_width` (words), `span_width_bucket`, `span_morph` [N, L],
    `span_rows` (rows of the spans table); `labels` [N] and/or `targets` [N, C] when present.
    """

    def __init__(self, pad_token_id: int, width_buckets: int = DEFAULT_MAX_SPAN_LEN):
        self.pad_token_id = pad_token_id
        self.width_buckets = width_buckets

    def __call__(self, items: Sequence[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(it["input_ids"]) for it in items)
        input_ids = np.full((len(items), longest), self.pad_token_id, dtype=np.int64)
        attention = np.zeros((len(items), longest), dtype=np.int64)
        for b, it in enumerate(items):
            input_ids[b, : len(it["input_ids"])] = it["input_ids"]
            attention[b, : len(it["input_ids"])] = 1
        batch = {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention),
            "sentence_rows": torch.tensor([it["row"] for it in items], dtype=torch.long),
            "n_maskable": torch.tensor([max(len(it["input_ids"]) - 2, 0) for it in items], dtype=torch.long),
        }
        if "frozen_hidden" in items[0]:  # cached output of the frozen bottom layers (glode.frozen_states)
            hidden = np.zeros((len(items), longest, items[0]["frozen_hidden"].shape[1]), dtype=np.float32)
            for b, it in enumerate(items):
                hidden[b, : len(it["input_ids"])] = it["frozen_hidden"]
            batch["frozen_hidden"] = torch.from_numpy(hidden)
        if "span_start" not in items[0]:
            return batch
        counts = [len(it["span_start"]) for it in items]
        batch["span_sentence"] = torch.from_numpy(np.repeat(np.arange(len(items)), counts))
        for key in ("span_start", "span_end", "span_width", "span_rows"):
            batch[key] = torch.from_numpy(np.concatenate([it[key] for it in items]).astype(np.int64))
        batch["span_morph"] = torch.from_numpy(np.concatenate([it["span_morph"] for it in items]).astype(np.int64))
        batch["span_width_bucket"] = subword_width_bucket(batch["span_start"], batch["span_end"], self.width_buckets)
        if "labels" in items[0]:
            batch["labels"] = torch.from_numpy(np.concatenate([it["labels"] for it in items]).astype(np.int64))
        if "targets" in items[0]:
            batch["targets"] = torch.from_numpy(np.concatenate([it["targets"] for it in items]).astype(np.float32))
        return batch


def make_loader(items: Sequence[dict], batch_size: int, pad_token_id: int, shuffle: bool, seed: int = 0, num_workers: int = 0, width_buckets: int = DEFAULT_MAX_SPAN_LEN):
    """A DataLoader over `items` with the length-bucketed sampler; returns (loader, sampler)."""
    sampler = LengthBucketBatchSampler([len(it["input_ids"]) for it in items], batch_size, shuffle=shuffle, seed=seed)
    loader = torch.utils.data.DataLoader(
        items, batch_sampler=sampler, collate_fn=SpanCollator(pad_token_id, width_buckets), num_workers=num_workers, persistent_workers=False
    )
    return loader, sampler


def move_batch(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
