"""Loading the sentence Parquet files that `glode prepare` writes, and the label sets.

Every training code path reads sentences through `load_sentences`, which refuses the hidden
gold labels of the unlabeled target train split: the paper's target data is unlabeled, and this
is the one door through which its labels could leak into training.
"""

from __future__ import annotations

import os
from typing import Sequence

import pandas as pd

from glode.io import GlodeInputError, read_parquet_metadata

# How a sentence's words meet the tokenizer (`glode prepare --tokenisation`, kept in the sentence
# Parquet's metadata): `words` gives each word to the tokenizer as its own word, as the paper
# does; `joined` tokenises the words' concatenation and maps the pieces back to the words, for
# scripts written without spaces whose benchmark files hold one character per token (WikiAnn zh).
TOKENISATIONS = ("words", "joined")

# The label sets without "O"; stage CLIs take them as an argument, these are only defaults.
DEFAULT_ENTITY_TYPES: dict[str, list[str]] = {
    "conll": ["PER", "LOC", "ORG", "MISC"],
    "wikiann": ["PER", "LOC", "ORG"],
}


def class_names(entity_types: Sequence[str]) -> list[str]:
    """The span classifier's classes: "O" first, then the entity types in the given order."""
    return ["O", *entity_types]


def _read(path: os.PathLike | str, meta: dict) -> pd.DataFrame:
    df = pd.read_parquet(path)
    # Arrow list columns arrive as numpy arrays; plain lists are what tokenizers and seqeval take
    for column in ("tokens", "tags"):
        if column in df.columns:
            df[column] = [list(values) for values in df[column]]
    mode = meta.get("tokenisation", "words")
    if mode not in TOKENISATIONS:  # the modes later stages act on (glode.spans.encode_words)
        raise GlodeInputError(path, f"unknown tokenisation {mode!r} in the metadata (expected words or joined): not a file of `glode prepare`?")
    df.attrs["glode"] = meta
    return df


def load_sentences(path: os.PathLike | str) -> pd.DataFrame:
    """Sentences (`sent_id`, `line`, `tokens`, and `tags` when labeled); metadata in `df.attrs["glode"]`.

    Raises GlodeInputError for a hidden-gold file (metadata `hidden_gold: true`): those labels
    belong to the unlabeled target train split and only analysis code may read them, through
    `load_hidden_gold`.
    """
    meta = read_parquet_metadata(path)
    if meta.get("hidden_gold"):
        raise GlodeInputError(
            path,
            "is a hidden-gold file (the labels of the unlabeled target train split); training code must "
            "not read it. Analysis code uses glode.data.load_hidden_gold.",
        )
    return _read(path, meta)


def load_hidden_gold(path: os.PathLike | str) -> pd.DataFrame:
    """The hidden gold tags of an unlabeled target train split (`sent_id`, `tokens`, `tags`).

    FOR ANALYSIS CODE ONLY (pseudo-label quality, Figure 3). Training code must never call this:
    the target train split is unlabeled in the paper's setting.
    """
    meta = read_parquet_metadata(path)
    if not meta.get("hidden_gold"):
        raise GlodeInputError(path, "is not a hidden-gold file (metadata hidden_gold is not true); use load_sentences")
    return _read(path, meta)
