"""`glode tag`: run a trained glode model on new text (plain text, CoNLL or JSONL).

A thin command over `glode.Tagger` (glode.tagger): raw text is split into sentences and words by
the model's splitter (spaCy's rules for its language, as its raw training text was), and a span
model is decoded as evaluation decodes: the model's class distribution over every candidate span
(`glode.spans.build_span_table`, `glode.pseudo_label.predict_spans`), then non-overlapping
entities, most probable first (`glode.evaluate.decode_entities`). So on the sentences of a test
file, `glode tag` finds exactly the entities that `glode pseudo-label` + `glode evaluate` score.

    glode tag --model results/source/conll/plain/seed1/model --input news.txt --out news.jsonl
    glode tag --model MODEL --input test.conll --out tagged.conll
    echo "Angela Merkel visited Madrid ." | glode tag --model MODEL

Output: CoNLL (`word<TAB>BIO tag`, a blank line after each sentence) or JSONL (one record per
input text, a line or a JSONL record or a CoNLL sentence, with its entities and their character
offsets into the record's `text`); see docs/tagging.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from glode.io import GlodeInputError, atomic_path, setup_logging
from glode.tagger import DEFAULT_MAX_SEQ_LEN, TaggedText, Tagger, text_from_words
from glode.textsplit import STDIN, SplitSentence, display_name, jsonl_record, read_lines

log = logging.getLogger(__name__)

FORMATS = ("text", "conll", "jsonl")
OUT_FORMATS = ("conll", "jsonl")
FORMAT_BY_SUFFIX = {".txt": "text", ".conll": "conll", ".tsv": "conll", ".iob": "conll", ".jsonl": "jsonl"}

# -- word rules other than the model's splitter: a text is then one sentence --------------------

Word = tuple[str, int, int]  # (word, start_char, end_char exclusive)


def whitespace_words(text: str) -> list[Word]:
    """Runs of non-space characters (what `str.split()` gives), with their offsets."""
    return [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def char_words(text: str) -> list[Word]:
    """One word per non-space character: for scripts written without spaces (Chinese, as in WikiAnn zh)."""
    return [(c, i, i + 1) for i, c in enumerate(text) if not c.isspace()]


WORD_RULES: dict[str, Callable[[str], list[Word]]] = {"whitespace": whitespace_words, "chars": char_words}
TOKENIZERS = ("model", *WORD_RULES)  # model: the model's splitter (sentences and words, glode.textsplit)


def one_sentence(text: str, words: list[Word], id: Any = None) -> TaggedText:
    sentence = SplitSentence([w for w, _, _ in words], [b for _, b, _ in words], [e for _, _, e in words])
    return TaggedText(text, [sentence] if words else [], id)


# -- readers: (id, text) of raw input, or texts already in words (CoNLL) -------------------------


def guess_format(path: str, given: str | None) -> str:
    if given:
        return given
    if path == STDIN:
        return "text"
    fmt = FORMAT_BY_SUFFIX.get(Path(path).suffix.lower())
    if fmt is None:
        raise GlodeInputError(path, f"cannot tell the format from the suffix {Path(path).suffix!r} (known: {', '.join(FORMAT_BY_SUFFIX)}); give --format")
    return fmt


def first_column(line: str, path: str, number: int) -> str | None:
    """The word of a CoNLL token line, None for a blank line, split as glode.conll splits the
    benchmark files (so that tag sees the words evaluation sees): a line with a tab at its tabs,
    else at runs of spaces and tabs; only spaces and tabs are blanks (not NBSP and the like)."""
    from glode.conll import split_columns

    if not line.strip(" \t"):
        return None
    word = split_columns(line)[0]
    if not word:
        raise GlodeInputError(display_name(path), f"empty word (first column): {line!r}", number)
    return word


def read_conll_words(path: str) -> list[TaggedText]:
    """The first column of a CoNLL file, a text per sentence; blank lines end sentences,
    `-DOCSTART-` lines are dropped (and end a sentence too, as glode.conll reads them). Unlike
    glode.conll.read_conll, no tag column is needed: the other columns are never read."""
    from glode.conll import DOCSTART

    texts, words = [], []
    for number, line in enumerate(read_lines(path) + [""], start=1):  # the "" ends the last sentence
        word = first_column(line, path, number)
        if word is not None and word != DOCSTART:
            words.append(word)
        elif words:
            texts.append(text_from_words(words))
            words = []
    return texts


def read_raw(path: str, fmt: str, text_key: str) -> list[tuple[Any, str]]:
    """(id, text) of every non-blank line: the line itself (text), or a JSON object's `text_key`
    string and its optional `id` (jsonl)."""
    records = []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        if fmt == "jsonl":
            record, text = jsonl_record(line, path, number, text_key)
            records.append((record.get("id"), text))
        else:
            records.append((None, line))
    return records


def read_inputs(paths: list[str], fmt: str | None, text_key: str) -> list[list[TaggedText] | list[tuple[Any, str]]]:
    """Per input, its CoNLL sentences as texts of words, or its raw (id, text) pairs: everything
    read, and every bad line reported, before the model loads."""
    inputs = []
    for path in paths:
        if path != STDIN and not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such input file")
        kind = guess_format(path, fmt)
        inputs.append(read_conll_words(path) if kind == "conll" else read_raw(path, kind, text_key))
    return inputs


def split_inputs(inputs, tokenizer: str, split: Callable[[list[str]], list[TaggedText]]) -> list[TaggedText]:
    """All texts of all inputs, in order, in sentences and words: raw text by `split` (the
    tagger's splitter) or, with --tokenizer whitespace/chars, a line as one sentence. A text
    without an id gets its index."""
    texts: list[TaggedText] = []
    for items in inputs:
        if items and isinstance(items[0], TaggedText):
            texts += items
            continue
        raw = [text for _, text in items]
        split_texts = split(raw) if tokenizer == "model" else [one_sentence(text, WORD_RULES[tokenizer](text)) for text in raw]
        for (id_, _), text in zip(items, split_texts):
            text.id = id_
        texts += split_texts
    for index, text in enumerate(texts):
        if text.id is None:
            text.id = index
    return texts


# -- writers ------------------------------------------------------------------------------------


def write_jsonl(out: TextIO, texts: list[TaggedText], records: list[dict]) -> None:
    for text, record in zip(texts, records):
        out.write(json.dumps({"id": text.id, "tokens": record["tokens"], "text": record["text"], "entities": record["entities"]}, ensure_ascii=False) + "\n")


def write_conll(out: TextIO, texts: list[TaggedText], records: list[dict]) -> None:
    """`word<TAB>tag` per word, a blank line after each sentence (a text may hold several)."""
    from glode.evaluate import entities_to_bio

    for text, record in zip(texts, records):
        tags = entities_to_bio(len(record["tokens"]), [(e["start_token"], e["end_token"] - 1, e["type"]) for e in record["entities"]])
        first = 0
        for sentence in text.sentences:
            for word, tag in zip(sentence.words, tags[first : first + len(sentence.words)]):
                out.write(f"{word}\t{tag}\n")
            out.write("\n")
            first += len(sentence.words)


@contextlib.contextmanager
def open_output(path: Path | None) -> Iterator[TextIO]:
    """stdout, or a file that appears only once it is complete."""
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        yield out


def output_format(out: Path | None, given: str | None) -> str:
    if given:
        return given
    return "jsonl" if out is not None and out.suffix.lower() == ".jsonl" else "conll"


# -- CLI ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glode tag", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="glode model directory (the `model/` of train-source, train-target or train-tokencls)")
    parser.add_argument("--input", nargs="+", default=[STDIN], metavar="FILE", help="input files; - or none: stdin")
    parser.add_argument("--format", choices=FORMATS, help="input format (default: from the suffix: .txt text, .conll/.tsv/.iob conll, .jsonl jsonl; stdin: text)")
    parser.add_argument("--tokenizer", choices=TOKENIZERS, default="model",
                        help="how text and JSONL are split: model (default: the model's splitter, sentences and words by spaCy's rules for its language, as its training text); "
                             "whitespace or chars (one word per non-space character): a line is one sentence")
    parser.add_argument("--tokenisation", choices=("words", "joined"),
                        help="words: each word to the tokenizer on its own; joined: a sentence's words concatenated (characters of Chinese text) "
                             "(default: what the model's target language used in training)")
    parser.add_argument("--text-key", default="text", help="JSONL key of the text (default: text)")
    parser.add_argument("--out", type=Path, help="output file (default: stdout)")
    parser.add_argument("--out-format", choices=OUT_FORMATS, help="output format (default: jsonl for a .jsonl --out, else conll)")
    parser.add_argument("--max-span-len", type=int, help="longest span in words, when the model directory does not record it (default: the model's)")
    parser.add_argument("--max-seq-len", type=int, help=f"encoder window in subwords, when the model directory does not record it (default: {DEFAULT_MAX_SEQ_LEN})")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per batch (default: 32)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N (default: auto)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto", help="auto: bf16 autocast on CUDA, fp32 on the CPU (default: auto)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, log warnings and errors only")
    parser.add_argument("--log", type=Path, help="also log to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log, logging.WARNING if args.quiet else logging.INFO)
    from glode.tagger import model_architecture

    model_architecture(args.model)  # a broken model directory fails before the input is read
    inputs = read_inputs(args.input, args.format, args.text_key)  # bad input fails before the model loads
    tagger = Tagger.load(args.model, device=args.device, precision=args.precision, batch_size=args.batch_size, quiet=args.quiet,
                         max_span_len=args.max_span_len, max_seq_len=args.max_seq_len, tokenisation=args.tokenisation)
    texts = split_inputs(inputs, args.tokenizer, tagger.split)
    records = tagger.tag_texts(texts)
    writer = write_jsonl if output_format(args.out, args.out_format) == "jsonl" else write_conll
    with open_output(args.out) as out:
        writer(out, texts, records)
    log.info("%d texts, %d sentences, %d entities -> %s", len(texts), sum(len(t.sentences) for t in texts), sum(len(r["entities"]) for r in records), args.out or "<stdout>")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
