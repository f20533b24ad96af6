"""Reader of CoNLL-style NER files (CoNLL-2002/2003, WikiAnn), as published.

One token per line: the word is the first column and the NER tag the last; files have 2 to 5
columns, separated by tabs or by spaces (detected per file from its first token line, and a line
that uses the other separator is still read). Blank lines separate sentences. `-DOCSTART-` lines
mark document boundaries: they are dropped, never counted as sentences, and also end any
sentence in progress (Dutch puts the first sentence of a document right after its `-DOCSTART-`
line, without a blank line between them).

Tags come out as clean BIO (IOB2): every entity starts with `B-`. Two inputs need repair, and
both are read the same way, as seqeval does by default ("lenient BIO"):

* IOB1 (`conll/de/dev.txt`): an entity starts with `I-X`; `B-X` only separates two adjacent
  entities of the same type.
* Stray `I-` in BIO files: one `I-X` per Spanish split follows `O`; WikiAnn zh has entities that
  contain a `#` tagged `O` (`太/B-ORG 平/I-ORG 湖/I-ORG #/O (/I-ORG ...`).

Rule: an `I-X` that follows `O`, the start of the sentence, or a tag of another type opens a new
entity of type X and is rewritten to `B-X`. So the zh example gives two ORG entities around the
`#`, which is what the published entity counts (MANIFEST.tsv, the paper's Table 5) assume.
"""

from __future__ import annotations

import collections
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from glode.io import GlodeInputError

log = logging.getLogger(__name__)

SCHEMES = ("BIO", "IOB1")
DOCSTART = "-DOCSTART-"
MIN_COLUMNS = 2

_SPACES = re.compile(r"[ \t]+")
_TAG_SHAPE = re.compile(r"^([BI])-(.+)$")
# C0 control characters are never text in these files: a NUL or an escape inside a word means a
# damaged or binary file. Tab separates columns and newline lines; a carriage return only ends a
# line (CRLF files), so one followed by more text on its line is rejected too.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]|\r(?![ \t\r]*(?:\n|\Z))")


@dataclass(slots=True)
class Sentence:
    line: int  # 1-based line of the sentence's first token in the file
    tokens: list[str]
    tags: list[str]  # BIO (IOB2), after the lenient repair described in the module docstring


@dataclass
class ConllFile:
    """A parsed file: its sentences and what the reader saw on the way."""

    path: str
    sentences: list[Sentence]
    encoding: str
    scheme: str
    separator: str  # "tab" or "space": the file's separator, from its first token line
    columns: int  # columns per token line
    docstart_lines: int
    lines: int
    opened_by_i: int = 0  # I-X tags that opened an entity and were rewritten to B-X
    entity_counts: dict[str, int] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return sum(len(s.tokens) for s in self.sentences)

    @property
    def entity_total(self) -> int:
        return sum(self.entity_counts.values())


def bio_entities(tags: Iterable[str]) -> list[tuple[str, int, int]]:
    """Entities of a BIO tag sequence as (type, start, end_inclusive), lenient reading.

    `B-X` always opens an entity; `I-X` continues an entity of type X and opens a new one after
    `O`, at the start, or after another type (seqeval's default). Any other tag is outside.
    """
    entities: list[tuple[str, int, int]] = []
    current: str | None = None
    start = 0
    i = -1
    for i, tag in enumerate(tags):
        if tag.startswith("I-") and tag[2:] == current:
            continue
        if current is not None:
            entities.append((current, start, i - 1))
            current = None
        if tag.startswith("B-") or tag.startswith("I-"):
            current, start = tag[2:], i
    if current is not None:
        entities.append((current, start, i))
    return entities


def count_entities(tag_sequences: Iterable[Sequence[str]]) -> dict[str, int]:
    """Entities per type over many sentences (lenient BIO), sorted by type name."""
    counts: collections.Counter[str] = collections.Counter()
    for tags in tag_sequences:
        counts.update(entity_type for entity_type, _, _ in bio_entities(tags))
    return dict(sorted(counts.items()))


def _decode(path: Path, data: bytes, encoding: str) -> str:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        bad = data[err.start : err.end]
        raise GlodeInputError(path, f"bytes {bad!r} cannot be decoded as {encoding} (is the declared encoding right?)", line) from None
    except LookupError:
        raise GlodeInputError(path, f"unknown encoding {encoding!r}") from None
    return text[1:] if text.startswith("\ufeff") else text  # a UTF-8 byte order mark is not a word


def _check_control_characters(path: Path, text: str) -> None:
    """Reject the first C0 control character other than tab and line ends, naming its file, line,
    code point and the column it is in. One regex pass over the whole text: fast on clean files."""
    found = _CONTROL_CHARACTER.search(text)
    if found is None:
        return
    line_start = text.rfind("\n", 0, found.start()) + 1
    line_end = text.find("\n", found.start())
    line = text[line_start : None if line_end < 0 else line_end]
    where = _column_at(line, found.start() - line_start)
    number = text.count("\n", 0, found.start()) + 1
    raise GlodeInputError(path, f"control character U+{ord(found.group()):04X} in {where}: not text (a damaged or binary file?)", number)


def _column_at(line: str, offset: int) -> str:
    """'word ...', 'tag ...' or 'column N ...': the column of a token line that holds `offset`."""
    columns = list(re.finditer(r"[^\t]+" if "\t" in line else r"[^ \t]+", line))
    for index, column in enumerate(columns):
        if column.start() <= offset < column.end():
            name = "word" if index == 0 else "tag" if index == len(columns) - 1 else f"column {index + 1}"
            return f"{name} {column.group()!r}"
    return f"line {line!r}"


def _tag_checker(path: Path, entity_types: Sequence[str]):
    """A fast validator: the allowed tags are few, so known-good tags are a set lookup."""
    allowed = {"O"} | {f"{prefix}-{t}" for t in entity_types for prefix in "BI"}

    def check(tag: str, line: int) -> None:
        if tag in allowed:
            return
        shape = _TAG_SHAPE.match(tag)
        if shape is None:
            raise GlodeInputError(path, f"tag {tag!r} is not O, B-X or I-X", line)
        raise GlodeInputError(path, f"entity type {shape.group(2)!r} (tag {tag!r}) is not in the label set {list(entity_types)}", line)

    return check


def split_columns(line: str, tabs: bool = True) -> list[str]:
    """The columns of a token line (its newline removed): at its tabs when `tabs` (a tab-separated
    file) and the line has one, else at runs of spaces and tabs after leading blanks. A tab file
    may still have a space-separated line, which is split on spaces. Only spaces and tabs are
    blanks (not NBSP and the like: those can be part of a word)."""
    if tabs and "\t" in line:
        return line.split("\t")
    return _SPACES.split(line.lstrip(" \t"))


def _is_docstart(stripped: str) -> bool:
    """A `-DOCSTART-` line (alone or with more columns), not a word that merely starts with it."""
    return stripped.startswith(DOCSTART) and stripped[len(DOCSTART) : len(DOCSTART) + 1] in ("", " ", "\t")


def _split_lines(text: str) -> list[str]:
    # split on "\n" only: str.splitlines would also break on "\x85" and friends inside words
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start another
    return lines


class _SentenceReader:
    """Takes a file's lines in order and collects its sentences, with what it saw on the way.

    It holds the state that spans lines: the file's separator and column count (both fixed by
    the first token line), the sentence in progress, and the previous tag's entity type (which
    decides whether an `I-X` continues an entity or opens one).
    """

    def __init__(self, path: Path, check_tag: Callable[[str, int], None]):
        self.path = path
        self.check_tag = check_tag
        self.sentences: list[Sentence] = []
        self.tokens: list[str] = []
        self.tags: list[str] = []
        self.sentence_line = 0
        self.previous_type: str | None = None  # entity type of the previous tag in this sentence
        self.tab_separated: bool | None = None  # decided by the first token line
        self.columns = 0
        self.columns_line = 0
        self.docstart_lines = 0
        self.opened_by_i = 0

    def read_line(self, raw: str, number: int) -> None:
        """One line of the file (1-based `number`): a token, a sentence break or a -DOCSTART-."""
        line = raw.rstrip(" \t\r")
        if not line.strip(" \t"):
            self.end_sentence()
            return
        stripped = line.lstrip(" \t")
        if _is_docstart(stripped):
            self.docstart_lines += 1
            self.end_sentence()  # Dutch starts a sentence right after -DOCSTART-, with no blank line
            return
        word, tag = self.word_and_tag(line, number)
        self.check_tag(tag, number)
        tag = self.repair_tag(tag)
        if not self.tokens:
            self.sentence_line = number
        self.tokens.append(word)
        self.tags.append(tag)

    def word_and_tag(self, line: str, number: int) -> tuple[str, str]:
        """Split a token line into columns, check their count, and return the first and last."""
        if self.tab_separated is None:
            self.tab_separated = "\t" in line
        cols = split_columns(line, tabs=self.tab_separated)
        if len(cols) < MIN_COLUMNS:
            raise GlodeInputError(self.path, f"expected at least {MIN_COLUMNS} columns (word ... tag), found {len(cols)}: {line!r}", number)
        if self.columns == 0:
            self.columns, self.columns_line = len(cols), number
        elif len(cols) != self.columns:
            raise GlodeInputError(self.path, f"found {len(cols)} columns, but line {self.columns_line} has {self.columns}: {line!r}", number)
        word, tag = cols[0], cols[-1]
        if not word:
            raise GlodeInputError(self.path, f"empty word: {line!r}", number)
        return word, tag

    def repair_tag(self, tag: str) -> str:
        """The tag as clean BIO: an `I-X` that cannot continue an entity opens one (`B-X`)."""
        if tag == "O":
            self.previous_type = None
            return tag
        entity_type = tag[2:]
        if tag[0] == "I" and entity_type != self.previous_type:
            tag = "B-" + entity_type  # IOB1 start or stray I-: opens an entity (lenient BIO)
            self.opened_by_i += 1
        self.previous_type = entity_type
        return tag

    def end_sentence(self) -> None:
        if self.tokens:
            self.sentences.append(Sentence(self.sentence_line, self.tokens, self.tags))
            self.tokens, self.tags = [], []
        self.previous_type = None


def read_conll(
    path: os.PathLike | str,
    entity_types: Sequence[str],
    encoding: str = "utf-8",
    scheme: str = "BIO",
) -> ConllFile:
    """Read a CoNLL NER file into sentences with BIO tags (IOB1 and stray `I-` repaired).

    Raises GlodeInputError (naming the file and 1-based line) for undecodable bytes, a C0 control
    character other than tab and line ends (a NUL inside a word, say), a token line
    with fewer than 2 columns or with a different column count than the file's first token line,
    an empty word, a tag that is not O/B-X/I-X, an entity type outside `entity_types`, and a file
    with no sentences (reported at its last line).
    """
    path = Path(path)
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; expected one of {SCHEMES}")
    if not entity_types:
        raise ValueError("entity_types must name at least one entity type")
    text = _decode(path, path.read_bytes(), encoding)
    _check_control_characters(path, text)
    reader = _SentenceReader(path, _tag_checker(path, entity_types))
    lines = _split_lines(text)
    for number, raw in enumerate(lines, start=1):
        reader.read_line(raw, number)
    reader.end_sentence()

    sentences = reader.sentences
    if not sentences:
        raise GlodeInputError(path, f"no sentences found ({len(lines)} lines, {reader.docstart_lines} -DOCSTART-)", max(len(lines), 1))
    parsed = ConllFile(
        path=str(path),
        sentences=sentences,
        encoding=encoding,
        scheme=scheme,
        separator="tab" if reader.tab_separated else "space",
        columns=reader.columns,
        docstart_lines=reader.docstart_lines,
        lines=len(lines),
        opened_by_i=reader.opened_by_i,
    )
    parsed.entity_counts = count_entities(s.tags for s in sentences)
    return parsed
