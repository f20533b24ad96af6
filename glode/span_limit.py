"""The span limit chosen from the data (`glode span-limit`, `spans.max_span_len: auto`).

A span model only finds entities of at most `max_span_len` tokens. The paper's code fixes 4,
which leaves one English WikiAnn entity in seven without a candidate span. `auto` takes, per
dataset, the smallest limit that covers a share (`coverage`, 0.99) of the *source* train
entities, and never reads target gold: the target train split that the workflow gives this
stage has its labels removed, and only its `tokens` column is read here.

A limit counts tokens of the data file, and a token is not the same unit in every language:
WikiAnn zh has one character per token. Each target's own need is the source's limit carried
over through the backbone's subword pieces, which both languages share:

    need(target) = round(L_source * pieces_per_token(source) / pieces_per_token(target))

measured on the unlabeled train text of each, as it is written (`pieces_per_token`). For word
languages this stays near the source's limit (ar, hi: 7 against en's 8 at study scale); for zh,
one character per token and 0.75 pieces per character, it asks about twice as many tokens. One limit serves the whole dataset (the source spans and width embeddings are
shared by all its targets): the largest need, capped by `cap`, which bounds the cost (candidate
spans per sentence grow with the limit). docs/scales.md gives the cost and the effect.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from glode.io import GlodeInputError, read_parquet_metadata, setup_logging, write_json

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# The paper's code default (`max_spanLen=4`): the one place glode writes it. Light to import
# (no pandas), since the model and the tagger read it too.
DEFAULT_MAX_SPAN_LEN = 4
DEFAULT_COVERAGE = 0.99
DEFAULT_CAP = 12


def smallest_covering_length(lengths: Sequence[int], coverage: float) -> int:
    """The smallest L such that at least `coverage` of `lengths` are <= L (1 for no lengths)."""
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    if len(lengths) == 0:
        return 1
    ordered = np.sort(np.asarray(lengths, dtype=np.int64))
    # the k-th smallest length, k = ceil(coverage * n): then k of n lengths are covered
    k = max(1, math.ceil(coverage * len(ordered) - 1e-9))
    return int(ordered[k - 1])


def entity_lengths(tag_sequences) -> list[int]:
    """Token lengths of every BIO entity in the sentences' tags."""
    from glode.conll import bio_entities

    return [end - start + 1 for tags in tag_sequences for _, start, end in bio_entities(list(tags))]


# A corpus whose tokens are single characters this often is written without spaces (WikiAnn zh).
CHARACTER_TOKEN_SHARE = 0.9


def token_unit(token_lists: Sequence[Sequence[str]], tokenisation: str = "words") -> str:
    """`characters` where a token is a character of unspaced text (joined tokenisation, or
    tokens that are nearly all one character long), else `words`."""
    if tokenisation == "joined":
        return "characters"
    lengths = np.fromiter((len(t) for tokens in token_lists for t in tokens), dtype=np.int64)
    return "characters" if len(lengths) and np.mean(lengths == 1) >= CHARACTER_TOKEN_SHARE else "words"


def pieces_per_token(tokenizer, token_lists: Sequence[Sequence[str]], unit: str = "words") -> float:
    """Backbone pieces per data token over a corpus, special tokens left out, measured on the
    text as it is written: words with spaces between them, characters without (fed word by
    word, a character would also get a piece of its own for the space marker)."""
    from glode.spans import encode_joined, encode_words

    if not token_lists:
        raise ValueError("no sentences to measure pieces per token on")
    lists = [list(t) for t in token_lists]
    encoded = encode_joined(tokenizer, lists) if unit == "characters" else encode_words(tokenizer, lists)
    pieces = sum(sum(entry is not None for entry in encoded.word_ids(row)) for row in range(len(lists)))
    tokens = sum(len(t) for t in lists)
    return pieces / tokens


def target_need(source_limit: int, source_pieces_per_token: float, target_pieces_per_token: float) -> int:
    """A source limit in target tokens: the same number of backbone pieces (module docstring),
    to the nearest whole token (halves up). Nearest, not up: the coverage is already taken on
    the source, and the ratio of two corpus averages is an estimate; rounding up would lift
    CoNLL es from en's 4 to 5 on a ratio of 1.05."""
    return max(1, math.floor(source_limit * source_pieces_per_token / target_pieces_per_token + 0.5))


def choose_span_limit(
    source: pd.DataFrame,
    targets: Mapping[str, pd.DataFrame],
    tokenizer,
    coverage: float = DEFAULT_COVERAGE,
    cap: int = DEFAULT_CAP,
    source_lang: str = "source",
) -> dict:
    """The dataset's span limit and how it was reached. `source` needs `tokens` and `tags`;
    of each target only `tokens` is read (its gold is never looked at)."""
    from glode.spans import sentence_tokenisation

    if "tags" not in source.columns:
        raise ValueError("the source sentences have no tags: the limit is chosen from labeled source entities")
    if cap < 1:
        raise ValueError(f"cap must be at least 1, got {cap}")
    lengths = entity_lengths(source["tags"])
    source_limit = smallest_covering_length(lengths, coverage)
    source_tokens = [list(t) for t in source["tokens"]]
    units = {source_lang: token_unit(source_tokens, sentence_tokenisation(source))}
    source_ppt = pieces_per_token(tokenizer, source_tokens, units[source_lang])
    needs = {source_lang: source_limit}
    ppt = {source_lang: round(source_ppt, 4)}
    for lang, sentences in targets.items():
        tokens = [list(t) for t in sentences["tokens"]]  # the one column of a target read here
        units[lang] = token_unit(tokens, sentence_tokenisation(sentences))
        target_ppt = pieces_per_token(tokenizer, tokens, units[lang])
        ppt[lang] = round(target_ppt, 4)
        needs[lang] = target_need(source_limit, source_ppt, target_ppt)
    wanted = max(needs.values())
    chosen = min(wanted, cap)
    covered = float(np.mean(np.asarray(lengths) <= chosen)) if lengths else 1.0
    return {
        "rule": "auto",
        "max_span_len": chosen,
        "coverage": coverage,
        "cap": cap,
        "capped": wanted > cap,
        "source_entities": len(lengths),
        "source_limit": source_limit,
        "source_coverage_at_limit": round(covered, 4),
        "needs": needs,
        "pieces_per_token": ppt,
        "token_units": units,
    }


def read_span_limit(path: Path) -> dict:
    """A `glode span-limit` file, checked: its `max_span_len` is a positive integer."""
    try:
        choice = json.loads(Path(path).read_text())
        value = choice["max_span_len"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise GlodeInputError(path, f"not a span-limit file of `glode span-limit` ({err})") from err
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise GlodeInputError(path, f"max_span_len {value!r} is not a positive integer")
    return choice


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glode span-limit", description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, type=Path, help="labeled source train sentences (Parquet of `glode prepare`)")
    parser.add_argument("--targets", nargs="*", default=[], metavar="LANG=PARQUET", type=str,
                        help="unlabeled target train sentences, one per target (only their tokens are read)")
    parser.add_argument("--tokenizer", required=True, help="the backbone's tokenizer (name or directory)")
    parser.add_argument("--coverage", type=float, default=DEFAULT_COVERAGE, help=f"share of source entities to cover (default: {DEFAULT_COVERAGE})")
    parser.add_argument("--cap", type=int, default=DEFAULT_CAP, help=f"never more than this many tokens (default: {DEFAULT_CAP})")
    parser.add_argument("--out", required=True, type=Path, help="JSON to write: the chosen max_span_len and how")
    parser.add_argument("--log", type=Path, help="also log to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    from glode.data import load_sentences
    from glode.model import load_tokenizer

    source = load_sentences(args.source)
    targets = {}
    for item in args.targets:
        lang, sep, path = item.partition("=")
        if not sep or not lang or not path:
            raise ValueError(f"--targets takes LANG=PARQUET items, got {item!r}")
        if read_parquet_metadata(path).get("labeled"):
            log.info("%s is labeled; only its tokens are read", path)
        targets[lang] = load_sentences(path)
    choice = choose_span_limit(source, targets, load_tokenizer(args.tokenizer), args.coverage, args.cap,
                               source_lang=read_parquet_metadata(args.source).get("lang") or "source")
    choice["source_path"] = str(args.source)
    write_json(choice, args.out)
    log.info("max_span_len %d: %.1f%% of %d source entities are <= %d tokens; needs per language %s (pieces per token %s)%s",
             choice["max_span_len"], 100 * choice["source_coverage_at_limit"], choice["source_entities"], choice["max_span_len"],
             choice["needs"], choice["pieces_per_token"], f"; capped at {args.cap}" if choice["capped"] else "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
