"""The CoNLL reader on small synthetic files: formats, tag schemes, lenient BIO and errors."""

from __future__ import annotations


import pytest

from glode.conll import bio_entities, count_entities, read_conll
from glode.io import GlodeInputError

CONLL_TYPES = ["PER", "LOC", "ORG", "MISC"]
WIKIANN_TYPES = ["PER", "LOC", "ORG"]


def write(tmp_path, text: str | bytes, name: str = "data.txt"):
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


# --- formats -------------------------------------------------------------------------------

FORMATS = {
    "2 columns tab": ("tab", 2, "EU\tB-ORG\nrejects\tO\n\nPeter\tB-PER\nBlackburn\tI-PER\n"),
    "2 columns space": ("space", 2, "EU B-ORG\nrejects O\n\nPeter B-PER\nBlackburn I-PER\n"),
    "3 columns space": ("space", 3, "EU NNP B-ORG\nrejects VBZ O\n\nPeter NNP B-PER\nBlackburn NNP I-PER\n"),
    "3 columns tab": ("tab", 3, "EU\tNNP\tB-ORG\nrejects\tVBZ\tO\n\nPeter\tNNP\tB-PER\nBlackburn\tNNP\tI-PER\n"),
    "4 columns space": ("space", 4, "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n"),
    "5 columns space": ("space", 5, "EU eu NNP B-NP B-ORG\nrejects reject VBZ B-VP O\n\nPeter peter NNP B-NP B-PER\nBlackburn b NNP I-NP I-PER\n"),
    "5 columns tab": ("tab", 5, "EU\teu\tNNP\tB-NP\tB-ORG\nrejects\tr\tVBZ\tB-VP\tO\n\nPeter\tp\tNNP\tB-NP\tB-PER\nBlackburn\tb\tNNP\tI-NP\tI-PER\n"),
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_column_counts_and_separators(tmp_path, name):
    separator, columns, text = FORMATS[name]
    parsed = read_conll(write(tmp_path, text), CONLL_TYPES)
    assert (parsed.separator, parsed.columns) == (separator, columns)
    assert [s.tokens for s in parsed.sentences] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert [s.tags for s in parsed.sentences] == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    assert [s.line for s in parsed.sentences] == [1, 4]
    assert parsed.entity_counts == {"ORG": 1, "PER": 1}


def test_tolerates_other_separator_crlf_extra_blanks_and_no_final_newline(tmp_path):
    text = "\n\nNew York\tB-LOC\r\nis   O\r\n\r\n\r\n\nok\tO"
    parsed = read_conll(write(tmp_path, text), CONLL_TYPES)
    # a tab file keeps spaces inside a word; a line without a tab falls back to spaces
    assert [s.tokens for s in parsed.sentences] == [["New York", "is"], ["ok"]]
    assert [s.line for s in parsed.sentences] == [3, 8]
    assert parsed.separator == "tab"


def test_latin1_with_declared_encoding(tmp_path):
    path = write(tmp_path, "Großer groß NN I-NC B-MISC\nMünchen münchen NE I-NC B-LOC\n".encode("iso-8859-1"))
    parsed = read_conll(path, CONLL_TYPES, encoding="ISO-8859-1")
    assert parsed.sentences[0].tokens == ["Großer", "München"]
    with pytest.raises(GlodeInputError) as err:
        read_conll(path, CONLL_TYPES)  # as UTF-8
    assert f"{path}:1:" in str(err.value)


def test_latin1_byte_0x85_is_a_character_not_a_line_break(tmp_path):
    # "\x85" is NEL to str.splitlines; in Latin-1 text it is part of a word
    path = write(tmp_path, b"a\x85b O\nc O\n")
    parsed = read_conll(path, CONLL_TYPES, encoding="ISO-8859-1")
    assert parsed.sentences[0].tokens == ["a\x85b", "c"]


def test_utf8_byte_order_mark_is_dropped(tmp_path):
    parsed = read_conll(write(tmp_path, "\ufeffEU\tB-ORG\n"), CONLL_TYPES)
    assert parsed.sentences[0].tokens == ["EU"]


# --- -DOCSTART- -----------------------------------------------------------------------------


def test_docstart_followed_by_blank_line_makes_no_empty_sentence(tmp_path):
    text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\n\n-DOCSTART- -X- -X- O\n\nPeter NNP B-NP B-PER\n"
    parsed = read_conll(write(tmp_path, text), CONLL_TYPES)
    assert [s.tokens for s in parsed.sentences] == [["EU"], ["Peter"]]
    assert [s.line for s in parsed.sentences] == [3, 7]
    assert parsed.docstart_lines == 2


def test_docstart_without_blank_line_ends_the_sentence(tmp_path):
    # Dutch CoNLL-2002: the first sentence follows its -DOCSTART- line directly
    text = "-DOCSTART- -DOCSTART- O\nDe Art O\ntekst N O\n\nHij Pron O\n-DOCSTART- -DOCSTART- O\nDat Pron O\n"
    parsed = read_conll(write(tmp_path, text), CONLL_TYPES)
    assert [s.tokens for s in parsed.sentences] == [["De", "tekst"], ["Hij"], ["Dat"]]
    assert [s.line for s in parsed.sentences] == [2, 5, 7]
    assert parsed.docstart_lines == 2


def test_docstart_tab_and_bare(tmp_path):
    parsed = read_conll(write(tmp_path, "-DOCSTART-\tO\n\nEU\tB-ORG\n\n-DOCSTART-\n\nx\tO\n"), CONLL_TYPES)
    assert [s.tokens for s in parsed.sentences] == [["EU"], ["x"]]
    assert parsed.docstart_lines == 2


# --- tag schemes ------------------------------------------------------------------------------


def test_iob1_to_bio(tmp_path):
    text = "\n".join(
        [
            "Peter x I-PER",  # IOB1 entity start
            "Blackburn x I-PER",
            "Hans x B-PER",  # B- separates two adjacent PER entities
            "und x O",
            "Bonn x I-LOC",
            "Berlin x I-ORG",  # a new type right after another opens a new entity
            "AG x I-ORG",
            "",
        ]
    )
    parsed = read_conll(write(tmp_path, text), CONLL_TYPES, scheme="IOB1")
    assert parsed.sentences[0].tags == ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG"]
    assert bio_entities(parsed.sentences[0].tags) == [("PER", 0, 1), ("PER", 2, 2), ("LOC", 4, 4), ("ORG", 5, 6)]
    assert parsed.opened_by_i == 3


def test_lenient_bio_i_after_o_and_at_sentence_start(tmp_path):
    # Spanish: one I- per split opens an entity at the start of a sentence
    text = "San AQ I-LOC\nSebastián NC I-LOC\nes V O\nde SP I-ORG\n"
    parsed = read_conll(write(tmp_path, text), CONLL_TYPES)
    assert parsed.sentences[0].tags == ["B-LOC", "I-LOC", "O", "B-ORG"]
    assert parsed.entity_counts == {"LOC": 1, "ORG": 1}
    assert parsed.opened_by_i == 2


def test_lenient_bio_zh_hash_inside_entity(tmp_path):
    # WikiAnn zh: 太/B-ORG 平/I-ORG 湖/I-ORG #/O (/I-ORG ... reads as two ORG entities
    text = "太\tB-ORG\n平\tI-ORG\n湖\tI-ORG\n#\tO\n(\tI-ORG\n乐\tI-ORG\n)\tI-ORG\n的\tO\n"
    parsed = read_conll(write(tmp_path, text), WIKIANN_TYPES)
    assert parsed.sentences[0].tags == ["B-ORG", "I-ORG", "I-ORG", "O", "B-ORG", "I-ORG", "I-ORG", "O"]
    assert bio_entities(parsed.sentences[0].tags) == [("ORG", 0, 2), ("ORG", 4, 6)]
    assert parsed.entity_counts == {"ORG": 2}


def test_i_after_other_type_opens_entity(tmp_path):
    parsed = read_conll(write(tmp_path, "a B-PER\nb I-LOC\nc I-LOC\n"), CONLL_TYPES)
    assert parsed.sentences[0].tags == ["B-PER", "B-LOC", "I-LOC"]


def test_bio_entities():
    assert bio_entities([]) == []
    assert bio_entities(["O", "O"]) == []
    assert bio_entities(["B-PER", "I-PER", "B-PER"]) == [("PER", 0, 1), ("PER", 2, 2)]
    assert bio_entities(["I-PER", "I-PER", "O", "I-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3)]
    assert bio_entities(["B-PER", "I-LOC", "I-LOC", "B-ORG"]) == [("PER", 0, 0), ("LOC", 1, 2), ("ORG", 3, 3)]
    assert bio_entities(("B-MISC", "I-MISC", "I-MISC")) == [("MISC", 0, 2)]
    assert count_entities([["B-PER", "O", "I-PER"], ["B-LOC"]]) == {"LOC": 1, "PER": 2}


def test_bio_entities_agrees_with_seqeval():
    from seqeval.metrics.sequence_labeling import get_entities

    tags = ["I-PER", "B-PER", "I-LOC", "O", "I-ORG", "I-ORG", "B-ORG", "O", "B-MISC", "I-MISC"]
    assert bio_entities(tags) == [tuple(e) for e in get_entities(tags)]


# --- errors -----------------------------------------------------------------------------------

ERRORS = {
    # name: (content, entity types, encoding, expected line, message fragment)
    "too few columns": ("EU B-ORG\nrejects O\n\nlonely\nx O\n", CONLL_TYPES, "utf-8", 4, "at least 2 columns"),
    "too few columns in tab file": ("EU\tB-ORG\nrejects\n", CONLL_TYPES, "utf-8", 2, "at least 2 columns"),
    "column count changes": ("EU NNP B-ORG\nx O\n", CONLL_TYPES, "utf-8", 2, "found 2 columns, but line 1 has 3"),
    "bad tag": ("EU B-ORG\n\nrejects X\n", CONLL_TYPES, "utf-8", 3, "'X' is not O, B-X or I-X"),
    "bad prefix": ("EU E-ORG\n", CONLL_TYPES, "utf-8", 1, "is not O, B-X or I-X"),
    "empty type": ("a O\nEU B-\n", CONLL_TYPES, "utf-8", 2, "is not O, B-X or I-X"),
    "lower-case o": ("a O\nb o\n", CONLL_TYPES, "utf-8", 2, "is not O, B-X or I-X"),
    "type outside label set": ("a\tO\n\nb\tO\nBerlin\tB-MISC\n", WIKIANN_TYPES, "utf-8", 4, "entity type 'MISC'"),
    "undecodable bytes": (b"a O\n\nb O\nM\xfcnchen B-LOC\n", CONLL_TYPES, "utf-8", 4, "cannot be decoded as utf-8"),
    "empty file": (b"", CONLL_TYPES, "utf-8", 1, "no sentences"),
    "only blank lines": ("\n\n\n", CONLL_TYPES, "utf-8", 3, "no sentences"),
    "only -DOCSTART-": ("-DOCSTART- -X- O\n\n", CONLL_TYPES, "utf-8", 2, "no sentences"),
    "NUL inside a word": ("EU B-ORG\n\nBer\x00lin B-LOC\n", CONLL_TYPES, "utf-8", 3, "control character U+0000 in word 'Ber\\x00lin'"),
    "escape inside a word, tab file": ("a\tO\nx\x1by\tO\n", WIKIANN_TYPES, "utf-8", 2, "control character U+001B in word 'x\\x1by'"),
    "carriage return inside a line": ("a O\r\nb\rc O\r\n", CONLL_TYPES, "utf-8", 2, "control character U+000D in word 'b\\rc'"),
    "control character in another column": ("a NN O\nb N\x07N O\n", CONLL_TYPES, "utf-8", 2, "control character U+0007 in column 2 'N\\x07N'"),
    "control character in the tag": ("a O\nb O\x01\n", CONLL_TYPES, "utf-8", 2, "control character U+0001 in tag 'O\\x01'"),
    "NUL in Latin-1": (b"a O\n\nM\xfcn\x00chen B-LOC\n", CONLL_TYPES, "ISO-8859-1", 3, "U+0000 in word 'Mün\\x00chen'"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_errors_name_file_and_line(tmp_path, name):
    content, types, encoding, line, fragment = ERRORS[name]
    path = write(tmp_path, content, name="bad-input.txt")
    with pytest.raises(GlodeInputError) as err:
        read_conll(path, types, encoding=encoding)
    message = str(err.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert "bad-input.txt" in message
    assert fragment in message
    assert err.value.line == line


def test_prepare_rejects_a_nul_byte_and_writes_nothing(tmp_path):
    """The stage reading the file: a NUL inside a word fails with file:line, and no output is left."""
    from test_prepare import make_root, run_prepare

    root = make_root(tmp_path, b"-DOCSTART- -X- O\n\nEU NNP B-ORG\nrej\x00ects VBZ O\n")
    out = tmp_path / "out" / "dev.parquet"
    with pytest.raises(GlodeInputError) as err:
        run_prepare(root, out)
    assert str(err.value).startswith(f"{root / 'conll/xx/dev.txt'}:4: control character U+0000 in word 'rej\\x00ects'")
    assert not out.parent.exists() or not any(out.parent.iterdir())  # no output, no temporary file


def test_unknown_scheme_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="IOB3"):
        read_conll(write(tmp_path, "a O\n"), CONLL_TYPES, scheme="IOB3")


def test_reads_20k_sentences(tmp_path):
    """A file of benchmark size (speed belongs to benchmarks, not tests: ~1 s here)."""
    sentence = "".join(f"w{i}\t{tag}\n" for i, tag in enumerate(["B-PER", "I-PER", "O", "O", "B-LOC", "O", "I-ORG", "O"] * 3))
    path = write(tmp_path, (sentence + "\n") * 20_000)
    parsed = read_conll(path, CONLL_TYPES)
    assert len(parsed.sentences) == 20_000
    assert parsed.entity_counts == {"LOC": 60_000, "ORG": 60_000, "PER": 60_000}
