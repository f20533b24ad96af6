"""`glode vocab`: the word pieces a corpus uses, for an MLM head over the corpus vocabulary.

The MLM term (Eq. 2) predicts each masked piece over the backbone's whole vocabulary: 250,002
pieces for XLM-R and e5, most of which no sentence of the configured corpora contains. On a CPU
that projection is about 40% of a source-training step. With `mlm_vocabulary: corpus` the
decoder and the softmax are restricted to the pieces of the target language's train sentences
(the only text the MLM task sees) plus the tokenizer's special tokens.

What changes: Eq. 2's softmax normaliser runs over those pieces only, so the probability mass
the full softmax would put on pieces the corpus never uses is dropped. The targets are the same
(every masked piece is in the list, by construction), and the decoder rows are the same tied
word-embedding rows; only the columns of unused pieces are left out. The default
`mlm_vocabulary: full` is the paper's form (docs/method.md; measured effect in docs/scales.md).

Output: a JSON file {"tokenizer", "sentences" (the input files), "vocab_size" (the tokenizer's; the model's
embedding matrix may have spare rows beyond it),
"pieces" (how many), "piece_ids" (sorted ascending, specials included)}, written atomically.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from glode.io import GlodeInputError, read_json, setup_logging, write_json

log = logging.getLogger(__name__)


def corpus_piece_ids(sentences: Sequence[Sequence[str]], tokenizer, tokenisation: str = "words") -> np.ndarray:
    """Sorted ids of every piece the sentences' words tokenize to, plus the special tokens."""
    from glode.spans import encode_words
    from glode.tokenizer import special_token_ids

    used = {tid for tid in (tokenizer.mask_token_id, tokenizer.unk_token_id, *special_token_ids(tokenizer)) if tid is not None}
    for start in range(0, len(sentences), 2048):  # tokenise in chunks: bounded memory on large corpora
        for ids in encode_words(tokenizer, sentences[start : start + 2048], tokenisation)["input_ids"]:
            used.update(ids)
    return np.asarray(sorted(used), dtype=np.int64)


def read_mlm_vocabulary(path: os.PathLike | str, vocab_size: int) -> np.ndarray:
    """The piece ids of a `glode vocab` file, checked against the model's vocabulary size."""
    data = read_json(path)
    try:
        ids = np.asarray(data["piece_ids"], dtype=np.int64)
    except (KeyError, TypeError, ValueError):
        raise GlodeInputError(path, "not a `glode vocab` file: no list of integer piece_ids") from None
    if len(ids) == 0 or (np.diff(ids) <= 0).any() or ids[0] < 0:
        raise GlodeInputError(path, "piece_ids must be sorted, unique and non-negative")
    if ids[-1] >= vocab_size:
        raise GlodeInputError(path, f"has piece id {ids[-1]}, but the model's vocabulary has {vocab_size} pieces: built with another tokenizer?")
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="glode vocab", description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", required=True, nargs="+", type=Path, help="sentences Parquet file(s) whose pieces the MLM head keeps")
    parser.add_argument("--tokenizer", required=True, help="Hugging Face tokenizer name or directory (the backbone's)")
    parser.add_argument("--out", required=True, type=Path, help="vocabulary JSON to write")
    parser.add_argument("--log", type=Path, help="also log to this file")
    args = parser.parse_args(argv)
    setup_logging(args.log)
    from glode.data import load_sentences
    from glode.model import load_tokenizer
    from glode.spans import sentence_tokenisation

    tokenizer = load_tokenizer(args.tokenizer)
    tables = [load_sentences(path) for path in args.sentences]
    ids = np.unique(np.concatenate([corpus_piece_ids(t["tokens"].tolist(), tokenizer, sentence_tokenisation(t)) for t in tables]))
    n_sentences = sum(len(t) for t in tables)
    vocab_size = len(tokenizer)
    write_json({"tokenizer": str(args.tokenizer), "sentences": [str(p) for p in args.sentences], "vocab_size": vocab_size,
                "pieces": len(ids), "piece_ids": ids.tolist()}, args.out)
    log.info("%d sentences use %d of %d pieces (%.1f%%) -> %s", n_sentences, len(ids), vocab_size, 100 * len(ids) / vocab_size, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
