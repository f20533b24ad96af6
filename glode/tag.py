"""`glode tag`: run a trained glode span model on new text (plain text, CoNLL or JSONL).

The decoding is evaluation's: the model's class distribution over every candidate span
(`glode.spans.build_span_table`, `glode.pseudo_label.predict_spans`), then non-overlapping
entities, most probable first (`glode.evaluate.decode_entities`). So on the sentences of a test
file, `glode tag` finds exactly the entities that `glode pseudo-label` + `glode evaluate` score.

    glode tag --model results/source/conll/plain/seed1/model --input news.txt --out news.jsonl
    glode tag --model MODEL --input test.conll --out tagged.conll
    echo "Angela Merkel visited Madrid ." | glode tag --model MODEL

Output: CoNLL (`word<TAB>BIO tag`, a blank line after each sentence) or JSONL (one record per
sentence with its entities and their character offsets into the record's `text`); see
docs/tagging.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from glode.io import GlodeInputError, atomic_path, setup_logging

log = logging.getLogger(__name__)

STDIN = "-"
FORMATS = ("text", "conll", "jsonl")
OUT_FORMATS = ("conll", "jsonl")
FORMAT_BY_SUFFIX = {".txt": "text", ".conll": "conll", ".tsv": "conll", ".iob": "conll", ".jsonl": "jsonl"}
DEFAULT_MAX_SEQ_LEN = 128

MODEL_DIR_HINT = (
    "a glode model directory is the `model/` that `glode train-source` or `glode train-target` writes "
    "(config.json with model_type 'glode_span_model', the weights, the tokenizer and glode_training.json)"
)

# -- tokenizers: text -> words, each with its character offsets into the text -------------------

Word = tuple[str, int, int]  # (word, start_char, end_char exclusive)


def whitespace_words(text: str) -> list[Word]:
    """Runs of non-space characters (what `str.split()` gives), with their offsets."""
    return [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def char_words(text: str) -> list[Word]:
    """One word per non-space character: for scripts written without spaces (Chinese, as in WikiAnn zh)."""
    return [(c, i, i + 1) for i, c in enumerate(text) if not c.isspace()]


TOKENIZERS: dict[str, Callable[[str], list[Word]]] = {"whitespace": whitespace_words, "chars": char_words}


@dataclass
class TaggedSentence:
    """One input sentence: its id, its text, its words and where each word lies in the text."""

    id: Any
    text: str
    tokens: list[str]
    offsets: list[tuple[int, int]]


def sentence_from_words(sentence_id: Any, text: str, words: list[Word]) -> TaggedSentence:
    return TaggedSentence(sentence_id, text, [w for w, _, _ in words], [(b, e) for _, b, e in words])


def sentence_from_tokens(sentence_id: Any, tokens: list[str]) -> TaggedSentence:
    """A pre-tokenized sentence (CoNLL): its text is the tokens joined by single spaces."""
    offsets, position = [], 0
    for token in tokens:
        offsets.append((position, position + len(token)))
        position += len(token) + 1
    return TaggedSentence(sentence_id, " ".join(tokens), list(tokens), offsets)


# -- readers ------------------------------------------------------------------------------------


def guess_format(path: str, given: str | None) -> str:
    if given:
        return given
    if path == STDIN:
        return "text"
    fmt = FORMAT_BY_SUFFIX.get(Path(path).suffix.lower())
    if fmt is None:
        raise GlodeInputError(path, f"cannot tell the format from the suffix {Path(path).suffix!r} (known: {', '.join(FORMAT_BY_SUFFIX)}); give --format")
    return fmt


def read_lines(path: str) -> list[str]:
    """The input's lines (UTF-8, a byte order mark dropped, CRLF accepted), without line ends."""
    if path == STDIN:
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


def display_name(path: str) -> str:
    return "<stdin>" if path == STDIN else path


def read_text(path: str, tokenize: Callable[[str], list[Word]]) -> list[TaggedSentence]:
    """One sentence per non-empty line; the line itself is the sentence's text."""
    return [sentence_from_words(None, line, tokenize(line)) for line in read_lines(path) if line.strip()]


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


def read_conll_words(path: str) -> list[TaggedSentence]:
    """The first column of a CoNLL file; blank lines end sentences, `-DOCSTART-` lines are dropped
    (and end a sentence too, as glode.conll reads them). Unlike glode.conll.read_conll, no tag
    column is needed: the other columns are never read."""
    from glode.conll import DOCSTART

    sentences, words = [], []
    for number, line in enumerate(read_lines(path) + [""], start=1):  # the "" ends the last sentence
        word = first_column(line, path, number)
        if word is not None and word != DOCSTART:
            words.append(word)
        elif words:
            sentences.append(sentence_from_tokens(None, words))
            words = []
    return sentences


def read_jsonl(path: str, tokenize: Callable[[str], list[Word]], text_key: str) -> list[TaggedSentence]:
    """One JSON object per line with a string under `text_key` and, optionally, an `id`."""
    name, sentences = display_name(path), []
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise GlodeInputError(name, f"not valid JSON: {err.msg} (column {err.colno})", number) from None
        if not isinstance(record, dict):
            raise GlodeInputError(name, f"expected a JSON object, got {type(record).__name__}", number)
        text = record.get(text_key)
        if not isinstance(text, str):
            problem = "no" if text_key not in record else f"a {type(text).__name__} as"
            raise GlodeInputError(name, f"{problem} {text_key!r} string (--text-key names the key of the text)", number)
        sentences.append(sentence_from_words(record.get("id"), text, tokenize(text)))
    return sentences


def read_inputs(paths: list[str], fmt: str | None, tokenizer: str, text_key: str) -> list[TaggedSentence]:
    """All sentences of all inputs, in order; a sentence without an id gets its index."""
    tokenize = TOKENIZERS[tokenizer]
    sentences: list[TaggedSentence] = []
    for path in paths:
        if path != STDIN and not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such input file")
        kind = guess_format(path, fmt)
        if kind == "text":
            sentences += read_text(path, tokenize)
        elif kind == "conll":
            sentences += read_conll_words(path)
        else:
            sentences += read_jsonl(path, tokenize, text_key)
    for index, sentence in enumerate(sentences):
        if sentence.id is None:
            sentence.id = index
    return sentences


# -- the model ----------------------------------------------------------------------------------


def check_model_dir(path: Path) -> None:
    """A clear error for anything that is not a saved glode span model (a backbone, a typo ...)."""
    from glode.model import SpanModelConfig

    if not path.is_dir():
        raise GlodeInputError(path, f"is not a directory; {MODEL_DIR_HINT}")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise GlodeInputError(path, f"has no config.json, so it is not a model directory; {MODEL_DIR_HINT}")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise GlodeInputError(config_file, f"is not valid JSON ({err}); {MODEL_DIR_HINT}") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != SpanModelConfig.model_type:
        what = f"a Hugging Face '{model_type}' model (a backbone?)" if model_type else "not a Hugging Face model config"
        raise GlodeInputError(path, f"config.json describes {what}, not a glode span model; {MODEL_DIR_HINT}")
    missing = [key for key in ("classes", "encoder_config", "max_span_len") if key not in config]
    if missing:
        raise GlodeInputError(path, f"config.json lacks the span-model fields {missing}; {MODEL_DIR_HINT}")


def training_summary(model_dir: Path) -> dict:
    """The model directory's glode_training.json (both training stages write it), or {}."""
    summary_file = model_dir / "glode_training.json"
    return json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.is_file() else {}


def span_settings_of(model_dir: Path, model_max_span_len: int, max_span_len: int | None, max_seq_len: int | None):
    """The spans the model was trained on (glode_training.json's `span_settings`, which both
    training stages write), else the options: evaluation enumerates spans the same way."""
    from glode.spans import SpanSettings

    summary_file = model_dir / "glode_training.json"
    saved = training_summary(model_dir).get("span_settings")
    if saved:
        settings = SpanSettings(int(saved["max_span_len"]), int(saved["max_seq_len"]))
        given = {"--max-span-len": (max_span_len, settings.max_span_len), "--max-seq-len": (max_seq_len, settings.max_seq_len)}
        for flag, (value, used) in given.items():
            if value is not None and value != used:
                log.warning("%s %d ignored: the model was trained with %d (%s)", flag, value, used, summary_file)
    else:
        # the width embedding has model_max_span_len rows: that is the longest span it can score
        settings = SpanSettings(model_max_span_len if max_span_len is None else max_span_len, DEFAULT_MAX_SEQ_LEN if max_seq_len is None else max_seq_len)
    if not 1 <= settings.max_span_len <= model_max_span_len:
        raise GlodeInputError(model_dir, f"max_span_len {settings.max_span_len}: the model scores spans of 1..{model_max_span_len} words")
    if settings.max_seq_len < 3:
        raise ValueError(f"--max-seq-len {settings.max_seq_len}: the window needs <s>, a subword and </s>")
    return settings


def tokenisation_of(model_dir: Path, given: str | None) -> str:
    """How words meet the tokenizer: --tokenisation, else what the model's target language used in
    training (glode_training.json `target_tokenisation`, e.g. `joined` for zh), else `words`."""
    return given or training_summary(model_dir).get("target_tokenisation") or "words"


def tag_sentences(model, tokenizer, sentences: list[TaggedSentence], settings, batch_size: int, device, precision: str, progress: bool,
                  tokenisation: str = "words") -> list[list[tuple]]:
    """Per sentence, its decoded entities (start, end inclusive, type, prob), as evaluation decodes them."""
    import pandas as pd

    from glode.batching import build_items
    from glode.evaluate import decode_entities
    from glode.pseudo_label import predict_spans, predictions_frame
    from glode.spans import build_span_table

    # sent_id = position in `sentences`; sentences without words never reach the model
    frame = pd.DataFrame({"sent_id": [i for i, s in enumerate(sentences) if s.tokens], "tokens": [s.tokens for s in sentences if s.tokens]})
    if frame.empty:
        return [[] for _ in sentences]
    frame.attrs["glode"] = {"tokenisation": tokenisation}  # read by build_span_table and build_items
    spans, stats = build_span_table(frame, tokenizer, settings.max_span_len, settings.max_seq_len)
    if stats["truncated_sentences"]:
        log.warning("%d sentences are longer than the encoder window of %d subwords: their last words get no entity", stats["truncated_sentences"], settings.max_seq_len)
    items = build_items(frame, tokenizer, settings.max_seq_len, spans, classes=None, max_span_len=model.config.max_span_len)
    probs, _ = predict_spans(model, items, len(spans), batch_size, device, pad_token_id=tokenizer.pad_token_id, progress=progress, precision=precision)
    classes = list(model.config.classes)
    decoded = decode_entities(predictions_frame(spans, frame, probs, classes), classes)
    return [decoded.get(i, []) for i in range(len(sentences))]


# -- writers ------------------------------------------------------------------------------------


def entity_records(sentence: TaggedSentence, entities: list[tuple]) -> list[dict]:
    records = []
    for start, end, label, prob in entities:
        start_char, end_char = sentence.offsets[start][0], sentence.offsets[end][1]
        records.append({"start_char": start_char, "end_char": end_char, "start_token": start, "end_token": end + 1,
                        "type": label, "text": sentence.text[start_char:end_char], "prob": float(prob)})  # fmt: skip
    return records


def write_jsonl(out: TextIO, sentences: list[TaggedSentence], entities: list[list[tuple]]) -> None:
    for sentence, found in zip(sentences, entities):
        record = {"id": sentence.id, "tokens": sentence.tokens, "text": sentence.text, "entities": entity_records(sentence, found)}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_conll(out: TextIO, sentences: list[TaggedSentence], entities: list[list[tuple]]) -> None:
    from glode.evaluate import entities_to_bio

    for sentence, found in zip(sentences, entities):
        if not sentence.tokens:
            continue  # a sentence of no words has no CoNLL form
        for word, tag in zip(sentence.tokens, entities_to_bio(len(sentence.tokens), found)):
            out.write(f"{word}\t{tag}\n")
        out.write("\n")


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
    parser.add_argument("--model", required=True, type=Path, help="glode model directory (the `model/` of train-source or train-target)")
    parser.add_argument("--input", nargs="+", default=[STDIN], metavar="FILE", help="input files; - or none: stdin")
    parser.add_argument("--format", choices=FORMATS, help="input format (default: from the suffix: .txt text, .conll/.tsv/.iob conll, .jsonl jsonl; stdin: text)")
    parser.add_argument("--tokenizer", choices=sorted(TOKENIZERS), default="whitespace", help="how text and JSONL are split into words (default: whitespace; chars: one word per non-space character)")
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
    parser.add_argument("--quiet", action="store_true", help="no progress bar, log warnings and errors only")
    parser.add_argument("--log", type=Path, help="also log to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log, logging.WARNING if args.quiet else logging.INFO)
    from glode.device import DEVICE_PATTERN, describe_device, select_device

    if args.batch_size < 1:
        raise ValueError("--batch-size must be >= 1")
    if not re.fullmatch(DEVICE_PATTERN, args.device):
        raise ValueError(f"--device {args.device!r}: must match {DEVICE_PATTERN}")
    check_model_dir(args.model)
    sentences = read_inputs(args.input, args.format, args.tokenizer, args.text_key)  # bad input fails before the model loads

    from glode.model import load_span_model

    device = select_device(args.device)
    log.info("device: %s", describe_device(device, args.precision))
    model, tokenizer = load_span_model(args.model, device)
    settings = span_settings_of(args.model, model.config.max_span_len, args.max_span_len, args.max_seq_len)
    progress = not args.quiet and sys.stderr.isatty() and len(sentences) > args.batch_size
    tokenisation = tokenisation_of(args.model, args.tokenisation)
    entities = tag_sentences(model, tokenizer, sentences, settings, args.batch_size, device, args.precision, progress, tokenisation)
    writer = write_jsonl if output_format(args.out, args.out_format) == "jsonl" else write_conll
    with open_output(args.out) as out:
        writer(out, sentences, entities)
    log.info("%d sentences, %d entities (%s, %s tokenisation) -> %s", len(sentences), sum(map(len, entities)), settings, tokenisation, args.out or "<stdout>")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
