"""Raw text -> sentences -> words, each word with its character offsets into the text.

glode's models see words (the benchmark files come tokenised). Raw text, whether a target
language's training data (`glode prepare --format text|jsonl`) or text to tag (`glode tag`,
`glode.Tagger`, the spaCy component), is split the same way everywhere, by spaCy's rule-based
blank-language pipeline: its tokenizer (the language's punctuation, elision and abbreviation
rules: "Orléans," -> "Orléans" ","; "l'Élysée" -> "l'" "Élysée"; Chinese: one word per
character, as WikiAnn zh) and its rule-based `sentencizer`. This is the field's usual choice for
languages without a trained pipeline, and it needs no model download. A language without rules
of its own in spaCy (or whose rules need an extra package, e.g. Japanese) falls back to spaCy's
multi-language rules (`xx`), with a warning; the splitter used is recorded with every model
(`describe()`), and `glode tag` uses the model's.

A sentence longer than the encoder window (`max_seq_len` subwords, glode.spans) is cut into
consecutive pieces that fit, so that no word goes unseen; `SplitReport` counts the sentences cut
and the words moved to later pieces, for the warning.
"""

from __future__ import annotations

import logging
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from glode.io import GlodeInputError

log = logging.getLogger(__name__)

FALLBACK_LANG = "xx"  # spaCy's multi-language rules
RAW_FORMATS = ("text", "jsonl")  # raw text: a document or paragraph per line, or JSON objects
STDIN = "-"


# -- reading raw text ---------------------------------------------------------------------------


def display_name(path: str | Path) -> str:
    return "<stdin>" if str(path) == STDIN else str(path)


def read_lines(path: str | Path) -> list[str]:
    """A file's lines (UTF-8, a byte order mark dropped, CRLF accepted), without line ends; a
    byte sequence that is not UTF-8 is an error naming the file and line."""
    import sys

    if str(path) == STDIN:
        buffer = getattr(sys.stdin, "buffer", None)
        data = buffer.read() if buffer is not None else sys.stdin.read().encode("utf-8")
    else:
        data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise GlodeInputError(display_name(path), f"bytes {data[err.start : err.end]!r} are not UTF-8", data.count(b"\n", 0, err.start) + 1) from None
    # split on "\n" only: str.splitlines would also split inside a line at U+2028, U+0085 ...
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def jsonl_record(line: str, path: str | Path, number: int, text_key: str) -> tuple[dict, str]:
    """(the JSON object of a JSONL line, its text under `text_key`), or an error naming the line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise GlodeInputError(display_name(path), f"not valid JSON: {err.msg} (column {err.colno})", number) from None
    if not isinstance(record, dict):
        raise GlodeInputError(display_name(path), f"expected a JSON object, got {type(record).__name__}", number)
    text = record.get(text_key)
    if not isinstance(text, str):
        problem = "no" if text_key not in record else f"a {type(text).__name__} as"
        raise GlodeInputError(display_name(path), f"{problem} {text_key!r} string (the key of the text: text_key / --text-key)", number)
    return record, text


def read_raw_texts(path: str | Path, fmt: str, text_key: str = "text") -> list[tuple[int, str]]:
    """(line number, text) of every non-blank line of a raw text file: the line itself (`text`)
    or its JSON object's `text_key` string (`jsonl`)."""
    if fmt not in RAW_FORMATS:
        raise ValueError(f"format {fmt!r} is not a raw text format ({', '.join(RAW_FORMATS)})")
    texts = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        texts.append((number, jsonl_record(line, path, number, text_key)[1] if fmt == "jsonl" else line))
    return texts


@dataclass
class SplitSentence:
    """One sentence of a text: its words and their [start, end) character offsets in the text."""

    words: list[str]
    starts: list[int]
    ends: list[int]


@dataclass
class SplitReport:
    """What the window did: sentences cut into pieces, and words moved to a later piece."""

    sentences: int = 0
    cut_sentences: int = 0
    moved_words: int = 0

    def warn(self, where: str, max_seq_len: int) -> None:
        if self.cut_sentences:
            log.warning("%s: %d of %d sentences are longer than the encoder window of %d subwords: cut into pieces that fit (%d words moved to a later piece)",
                        where, self.cut_sentences, self.sentences, max_seq_len, self.moved_words)


def blank_pipeline(lang: str):
    """spaCy's blank pipeline of `lang` with a rule-based sentencizer; (nlp, the language used)."""
    import spacy

    try:
        nlp = spacy.blank(lang)
        used = lang
    except (ImportError, KeyError, ValueError) as err:  # unknown code, or rules that need a package
        log.warning("spaCy has no usable rules for language %r (%s): splitting with its multi-language rules (%r)", lang, str(err).splitlines()[0], FALLBACK_LANG)
        nlp, used = spacy.blank(FALLBACK_LANG), FALLBACK_LANG
    nlp.add_pipe("sentencizer")
    return nlp, used


class Splitter:
    """Splits texts of one language into sentences of words with character offsets."""

    def __init__(self, lang: str):
        self.lang = lang
        self.nlp, self.rules = blank_pipeline(lang)

    def describe(self) -> dict:
        """What a model records about how its raw text was split (glode_training.json `splitter`)."""
        import spacy

        return {"library": "spacy", "version": spacy.__version__, "lang": self.lang, "rules": self.rules, "pipeline": list(self.nlp.pipe_names)}

    def split_docs(self, texts: Iterable[str]) -> Iterable[list[SplitSentence]]:
        """Per text, its sentences (whitespace tokens dropped; a text of blanks gives none)."""
        for doc in self.nlp.pipe(texts, batch_size=256):
            sentences = []
            for sent in doc.sents:
                tokens = [t for t in sent if not t.is_space]
                if tokens:
                    sentences.append(SplitSentence([t.text for t in tokens], [t.idx for t in tokens], [t.idx + len(t.text) for t in tokens]))
            yield sentences


def splitter_record(sentences_metadata: dict) -> dict:
    """How raw text is split for a model trained on these sentences (glode_training.json
    `splitter`): the record of its raw training text, else spaCy's rules for the sentences'
    language (a benchmark file comes as words; raw text given to the model is split by these)."""
    if sentences_metadata.get("splitter"):
        return dict(sentences_metadata["splitter"])
    return {"library": "spacy", "lang": sentences_metadata.get("lang"), "trained_on": "words of a tokenised file"}


def subword_counts(tokenizer, sentences: Sequence[Sequence[str]]) -> list[list[int]]:
    """Per sentence, the number of subwords the tokenizer gives each word on its own (glode.spans'
    `words` mode), in one tokenizer call."""
    if not sentences:
        return []
    encoded = tokenizer([list(words) for words in sentences], is_split_into_words=True, add_special_tokens=False, verbose=False)
    counts = []
    for row, words in enumerate(sentences):
        per_word = [0] * len(words)
        for word in encoded.word_ids(row):
            if word is not None:
                per_word[word] += 1
        counts.append(per_word)
    return counts


def fit_window(sentence: SplitSentence, counts: Sequence[int], max_seq_len: int) -> list[SplitSentence]:
    """`sentence` cut into consecutive pieces whose subwords fit the window (max_seq_len minus
    <s> and </s>); a single word longer than the window is a piece of its own."""
    room = max_seq_len - 2
    pieces, first, used = [], 0, 0
    for i, n in enumerate(counts):
        if used + n > room and i > first:
            pieces.append(SplitSentence(sentence.words[first:i], sentence.starts[first:i], sentence.ends[first:i]))
            first, used = i, 0
        used += n
    pieces.append(SplitSentence(sentence.words[first:], sentence.starts[first:], sentence.ends[first:]))
    return pieces


def split_within_window(splitter: Splitter, texts: Iterable[str], tokenizer, max_seq_len: int, report: SplitReport | None = None,
                        batch: int = 256) -> Iterable[list[SplitSentence]]:
    """Per text, its sentences, each cut to fit the encoder window (counted in `report`)."""
    report = report if report is not None else SplitReport()
    pending: list[list[SplitSentence]] = []

    def surely_fits(sentence: SplitSentence) -> bool:
        # a word is at most one piece per character plus a word-start piece: no need to count
        return sum(len(w) + 1 for w in sentence.words) <= max_seq_len - 2

    def fitted(docs: list[list[SplitSentence]]) -> Iterable[list[SplitSentence]]:
        to_count = [s for doc in docs for s in doc if not surely_fits(s)]
        counts = dict(zip(map(id, to_count), subword_counts(tokenizer, [s.words for s in to_count])))
        for doc in docs:
            out = []
            for sentence in doc:
                pieces = fit_window(sentence, counts[id(sentence)], max_seq_len) if id(sentence) in counts else [sentence]
                report.sentences += 1
                if len(pieces) > 1:
                    report.cut_sentences += 1
                    report.moved_words += len(sentence.words) - len(pieces[0].words)
                out += pieces
            yield out

    for doc in splitter.split_docs(texts):
        pending.append(doc)
        if len(pending) >= batch:
            yield from fitted(pending)
            pending = []
    yield from fitted(pending)
