"""Span enumeration (`glode spans`): every candidate span of every sentence, to Parquet.

The span model (paper section 3.1) classifies "all possible spans" of a sentence; following the
authors' runs these are the word n-grams of 1..max_span_len words (DEFAULT_MAX_SPAN_LEN, 4; `auto`
chooses it from the source data, glode.span_limit). A span is only a
candidate if the encoder can see it: its last subword must lie inside the window of
`max_seq_len` subwords. Gold entities that no candidate covers (too long, or truncated away) are
counted here, so that evaluation can report them as missed instead of silently dropping them.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from glode.data import TOKENISATIONS, load_sentences
from glode.io import GlodeInputError, read_parquet_metadata, setup_logging, write_json, write_parquet
from glode.span_limit import DEFAULT_MAX_SPAN_LEN

log = logging.getLogger(__name__)

# Tested in this order (reference notes): a word like "USA" is upper, not title.
CASE_CLASSES = ("upper", "lower", "title", "digit", "other")


@dataclass(frozen=True)
class SpanSettings:
    """How a spans file was enumerated. Its metadata is the one source of these numbers: the
    stages that read spans (training, prediction) take them from there, never from a flag."""

    max_span_len: int
    max_seq_len: int
    # how max_span_len was set: "fixed", or "auto: ..." (glode.span_limit; `limit_rule`)
    limit_rule: str = "fixed"


def limit_rule(span_limit: dict | None) -> str:
    """One line for how a spans file's max_span_len was set, from its `span_limit` metadata."""
    if not span_limit or span_limit.get("rule") != "auto":
        return "fixed"
    capped = f", capped at {span_limit['cap']}" if span_limit.get("capped") else ""
    return (f"auto: covers {span_limit['coverage']:.0%} of {span_limit['source_entities']} source train entities "
            f"(needs per language {span_limit['needs']}{capped})")


def read_span_settings(*paths: os.PathLike | str) -> SpanSettings:
    """The span settings stored in the metadata of one or more spans files; they must agree
    (source and target spans of one model are enumerated alike)."""
    settings: SpanSettings | None = None
    first = None
    for path in paths:
        meta = read_parquet_metadata(path)
        missing = [key for key in ("max_span_len", "max_seq_len") if meta.get(key) is None]
        if missing:
            raise GlodeInputError(path, f"no {' or '.join(missing)} in the file's metadata: not a spans file of `glode spans` (rebuild it)")
        current = SpanSettings(int(meta["max_span_len"]), int(meta["max_seq_len"]), limit_rule(meta.get("span_limit")))
        if settings is not None and current != settings:
            raise GlodeInputError(path, f"spans enumerated with {current}, but {first} with {settings}: build both with the same `spans` settings")
        settings, first = current, path
    if settings is None:
        raise ValueError("read_span_settings needs at least one spans file")
    return settings


def morph_class(word: str) -> int:
    """Case class of one word: 0 all upper, 1 all lower, 2 title, 3 digits, 4 other."""
    if word.isupper():
        return 0
    if word.islower():
        return 1
    if word.istitle():
        return 2
    if word.isdigit():
        return 3
    return 4


def _words_of(word: int | tuple[int, int] | None) -> range:
    """The words one subword belongs to: none, one, or (joined tokenisation) a run of them."""
    if word is None:
        return range(0)
    if isinstance(word, tuple):
        return range(word[0], word[1] + 1)
    return range(word, word + 1)


def word_subword_bounds(encoding_word_ids: Sequence[int | tuple[int, int] | None], n_words: int, max_seq_len: int) -> list[tuple[int, int] | None]:
    """(first, last) subword position of each word in an encoded sentence, or None if out of reach.

    `encoding_word_ids` is a fast tokenizer's `word_ids()` for the *untruncated* sentence encoded
    with special tokens (`<s>` at position 0); with joined tokenisation an entry may be a
    (first, last) run of words that one subword covers. A word is reachable when all its
    subwords fit in the first `max_seq_len - 1` positions, leaving room for `</s>`. A word that
    the tokenizer maps to no subword at all is unreachable too.
    """
    bounds: list[tuple[int, int] | None] = [None] * n_words
    limit = max_seq_len - 1  # positions 0..limit-1 hold <s> and words; </s> takes the last slot
    for pos, entry in enumerate(encoding_word_ids):
        if pos >= limit:
            continue
        for word in _words_of(entry):
            first_last = bounds[word]
            bounds[word] = (pos, pos) if first_last is None else (first_last[0], pos)
    # A word cut in the middle by the window is unreachable as a whole.
    for pos, entry in enumerate(encoding_word_ids):
        if pos >= limit:
            for word in _words_of(entry):
                bounds[word] = None
    return bounds




@dataclass
class JoinedEncoding:
    """What `encode_words` returns for joined tokenisation: `["input_ids"]` and `word_ids(row)`,
    where a piece covering several words (characters) maps to their (first, last) run."""

    input_ids: list[list[int]]
    piece_words: list[list[int | tuple[int, int] | None]]

    def __getitem__(self, key: str) -> list[list[int]]:
        if key != "input_ids":
            raise KeyError(key)
        return self.input_ids

    def word_ids(self, row: int) -> list[int | tuple[int, int] | None]:
        return self.piece_words[row]


def encode_joined(tokenizer, sentences: Sequence[Sequence[str]]) -> JoinedEncoding:
    """Tokenise each sentence's words concatenated without spaces; map every piece to the words
    its characters come from (character offsets of the fast tokenizer)."""
    texts = ["".join(words) for words in sentences]
    encoded = tokenizer(texts, truncation=False, add_special_tokens=True, return_offsets_mapping=True, verbose=False)
    piece_words = []
    for words, offsets in zip(sentences, encoded["offset_mapping"]):
        word_of_char = np.repeat(np.arange(len(words)), [len(w) for w in words])
        row = []
        for start, end in offsets:
            if end <= start:  # special tokens
                row.append(None)
                continue
            first, last = int(word_of_char[start]), int(word_of_char[end - 1])
            row.append(first if first == last else (first, last))
        piece_words.append(row)
    return JoinedEncoding(list(encoded["input_ids"]), piece_words)


def sentence_tokenisation(sentences: pd.DataFrame) -> str:
    """The tokenisation a sentence table was prepared for (its metadata; `words` by default)."""
    mode = sentences.attrs.get("glode", {}).get("tokenisation") or "words"
    if mode not in TOKENISATIONS:
        raise ValueError(f"unknown tokenisation {mode!r} in the sentences' metadata; expected one of {TOKENISATIONS}")
    return mode


def encode_words(tokenizer, sentences: Sequence[Sequence[str]], tokenisation: str = "words"):
    """Tokenize word lists exactly as the model does (no truncation; the window is applied later)."""
    if tokenisation == "joined":
        return encode_joined(tokenizer, [list(s) for s in sentences])
    # verbose=False: no "longer than the maximum sequence length" warning; windows are cut later
    return tokenizer(list(map(list, sentences)), is_split_into_words=True, truncation=False, add_special_tokens=True, verbose=False)


def enumerate_spans(n_words: int, max_span_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and inclusive end word index of every span of 1..max_span_len words, in (start, end) order."""
    starts, ends = [], []
    for start in range(n_words):
        for end in range(start, min(start + max_span_len, n_words)):
            starts.append(start)
            ends.append(end)
    return np.asarray(starts, dtype=np.int16), np.asarray(ends, dtype=np.int16)


def build_span_table(sentences: pd.DataFrame, tokenizer, max_span_len: int = DEFAULT_MAX_SPAN_LEN, max_seq_len: int = 128) -> tuple[pd.DataFrame, dict]:
    """All reachable candidate spans of `sentences` (columns sent_id, tokens[, tags]) and statistics."""
    from glode.conll import bio_entities

    labeled = "tags" in sentences.columns
    tokenisation = sentence_tokenisation(sentences)
    encoded = encode_words(tokenizer, sentences["tokens"].tolist(), tokenisation)
    cols: dict[str, list] = {"sent_id": [], "start": [], "end": [], "width": [], "morph": [], "label": []}
    stats = dict(sentences=len(sentences), spans=0, truncated_sentences=0, max_span_len=max_span_len, max_seq_len=max_seq_len, tokenisation=tokenisation)
    gold_total = too_long = truncated = 0
    for row_idx, (sent_id, tokens) in enumerate(zip(sentences["sent_id"].tolist(), sentences["tokens"].tolist())):
        tokens = list(tokens)
        bounds = word_subword_bounds(encoded.word_ids(row_idx), len(tokens), max_seq_len)
        reachable = np.array([b is not None for b in bounds], dtype=bool)
        if not reachable.all():
            stats["truncated_sentences"] += 1
        morph = [morph_class(w) for w in tokens]
        gold: dict[tuple[int, int], str] = {}
        if labeled:
            for etype, start, end in bio_entities(list(sentences["tags"].iat[row_idx])):
                gold_total += 1
                if end - start + 1 > max_span_len:
                    too_long += 1
                elif not reachable[start : end + 1].all():
                    truncated += 1
                gold[(start, end)] = etype
        starts, ends = enumerate_spans(len(tokens), max_span_len)
        for start, end in zip(starts.tolist(), ends.tolist()):
            if not (reachable[start] and reachable[end]):
                continue
            cols["sent_id"].append(sent_id)
            cols["start"].append(start)
            cols["end"].append(end)
            cols["width"].append(end - start + 1)
            cols["morph"].append(morph[start : end + 1])
            cols["label"].append(gold.get((start, end), "O") if labeled else None)
    table = pd.DataFrame(
        {
            "sent_id": np.asarray(cols["sent_id"], dtype=np.int64),
            "start": np.asarray(cols["start"], dtype=np.int16),
            "end": np.asarray(cols["end"], dtype=np.int16),
            "width": np.asarray(cols["width"], dtype=np.int8),
            "morph": pd.Series(cols["morph"], dtype=pd.ArrowDtype(pa.list_(pa.int8()))),
            "label": pd.Series(cols["label"], dtype=pd.ArrowDtype(pa.string())),
        }
    )
    stats["spans"] = len(table)
    stats["gold_entities"] = gold_total if labeled else None
    stats["unreachable_too_long"] = too_long if labeled else None
    stats["unreachable_truncated"] = truncated if labeled else None
    return table, stats


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glode spans", description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", required=True, type=Path, help="sentences Parquet from `glode prepare`")
    parser.add_argument("--tokenizer", required=True, help="Hugging Face tokenizer name or directory (the backbone's)")
    parser.add_argument("--max-span-len", type=max_span_len_value, default=DEFAULT_MAX_SPAN_LEN,
                        help=f"longest candidate span in words, or `auto`: the value in --span-limit (default: {DEFAULT_MAX_SPAN_LEN})")
    parser.add_argument("--span-limit", type=Path, help="with --max-span-len auto: the JSON of `glode span-limit` that holds the chosen value")
    parser.add_argument("--max-seq-len", type=int, default=128, help="encoder window in subwords, with <s> and </s> (default: 128)")
    parser.add_argument("--warn-unreachable", type=float, default=0.05, help="warn when more than this share of the gold entities can never be predicted (default: 0.05)")
    parser.add_argument("--out", required=True, type=Path, help="spans Parquet to write")
    parser.add_argument("--stats-out", required=True, type=Path, help="statistics JSON to write")
    parser.add_argument("--log", type=Path, help="also log to this file")
    return parser


def max_span_len_value(text: str) -> int | str:
    """`--max-span-len`: a positive integer or `auto`."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a positive integer nor 'auto'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def resolve_max_span_len(value: int | str, span_limit_path: Path | None) -> tuple[int, dict]:
    """The limit to enumerate with, and how it was set (recorded in the spans metadata)."""
    from glode.span_limit import read_span_limit

    if value == "auto":
        if span_limit_path is None:
            raise ValueError("--max-span-len auto needs --span-limit FILE (written by `glode span-limit`)")
        choice = read_span_limit(span_limit_path)
        log.info("max_span_len auto: %d, from %s", choice["max_span_len"], span_limit_path)
        return choice["max_span_len"], {**choice, "file": str(span_limit_path)}
    if span_limit_path is not None:
        raise ValueError(f"--span-limit is only read with --max-span-len auto, not {value}")
    return int(value), {"rule": "fixed"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    from glode.model import load_tokenizer

    max_span_len, span_limit = resolve_max_span_len(args.max_span_len, args.span_limit)
    sentences = load_sentences(args.sentences)
    tokenizer = load_tokenizer(args.tokenizer)
    table, stats = build_span_table(sentences, tokenizer, max_span_len, args.max_seq_len)
    stats["span_limit"] = span_limit
    meta = read_parquet_metadata(args.sentences)
    stats["tokenizer"] = str(args.tokenizer)
    stats["sentences_path"] = str(args.sentences)
    write_parquet(table, args.out, metadata={**{k: meta.get(k) for k in ("dataset", "lang", "split", "entity_types", "labeled")}, **stats})
    write_json(stats, args.stats_out)
    log.info("%s: %d sentences -> %d spans (%s)", args.sentences, stats["sentences"], stats["spans"], {k: stats[k] for k in ("gold_entities", "unreachable_too_long", "unreachable_truncated")})
    report_unreachable(args.sentences, stats, args.warn_unreachable)
    return 0


def report_unreachable(path: Path, stats: dict, warn_above: float) -> None:
    """Log the share of gold entities that no candidate span can reach (they are always missed),
    as a warning above `warn_above`: a language with long names wants a larger max_span_len."""
    if not stats.get("gold_entities"):
        return  # an unlabeled split (its gold is hidden) or no entities: nothing to count
    too_long, truncated = stats["unreachable_too_long"], stats["unreachable_truncated"]
    share = (too_long + truncated) / stats["gold_entities"]
    message = (f"{path}: {100 * share:.1f}% of {stats['gold_entities']} gold entities can never be predicted "
               f"({too_long} longer than max_span_len {stats['max_span_len']}, {truncated} past the {stats['max_seq_len']}-piece window)")
    if share > warn_above:
        log.warning("%s; recall on this file is at most %.1f%%. Raise spans.max_span_len to reach more (docs/scales.md: its cost)", message, 100 * (1 - share))
    else:
        log.info(message)


if __name__ == "__main__":
    raise SystemExit(main())
