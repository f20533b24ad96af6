"""`glode prepare`, the manifest, checksums, downloads and the hidden-gold guard."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from glode import prepare
from glode.data import DEFAULT_ENTITY_TYPES, class_names, load_hidden_gold, load_sentences
from glode.io import GlodeInputError, read_parquet_metadata
from glode.manifest import fetch, find_entry, read_manifest, sha256_of, verify_checksum

HEADER = "dataset\tlang\tsplit\tpath\tsha256\tsentences\tdocstart_lines\tentity_total\tentities\tsource_url\tformat\n"
GOOD = "-DOCSTART- -X- O\n\nEU NNP B-ORG\nrejects VBZ O\nGerman JJ B-MISC\n\nPeter NNP B-PER\nBlackburn NNP I-PER\n"
GOOD_ENTITIES = {"MISC": 1, "ORG": 1, "PER": 1}


def manifest_row(
    rel_path: str,
    content: bytes,
    *,
    dataset="conll",
    lang="xx",
    split="dev",
    sentences=2,
    docstart=1,
    entities=GOOD_ENTITIES,
    url="https://example.invalid/not-used",
    fmt="space-separated 3 columns (word POS NER); BIO; UTF-8",
) -> str:
    import hashlib

    counts = " ".join(f"{k}={v}" for k, v in sorted(entities.items()))
    sha = hashlib.sha256(content).hexdigest()
    return "\t".join([dataset, lang, split, rel_path, sha, str(sentences), str(docstart), str(sum(entities.values())), counts, url, fmt]) + "\n"


def make_root(tmp_path: Path, content: str | bytes = GOOD, *, write_file=True, **row) -> Path:
    """A data root holding one file `conll/xx/<split>.txt` and a MANIFEST.tsv describing it."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    root = tmp_path / "data"
    rel = f"{row.get('dataset', 'conll')}/{row.get('lang', 'xx')}/{row.get('split', 'dev')}.txt"
    if write_file:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    root.mkdir(exist_ok=True)
    (root / "MANIFEST.tsv").write_text(HEADER + manifest_row(rel, data, **row), encoding="utf-8")
    return root


def run_prepare(root: Path, out: Path, *extra: str, split="dev", role="source", types=("PER", "LOC", "ORG", "MISC")) -> int:
    argv = ["--data-root", str(root), "--dataset", "conll", "--lang", "xx", "--split", split, "--role", role]
    argv += ["--entity-types", *types, "--out", str(out), *extra]
    return prepare.main(argv)


# --- manifest ---------------------------------------------------------------------------------


def test_manifest_parses_format_and_entities(tmp_path):
    root = make_root(tmp_path, fmt="space-separated 5 columns (word lemma POS chunk NER); IOB1; ISO-8859-1; -DOCSTART- lines")
    (entry,) = read_manifest(root / "MANIFEST.tsv")
    assert (entry.encoding, entry.scheme, entry.separator, entry.columns) == ("ISO-8859-1", "IOB1", "space", 5)
    assert entry.entities == GOOD_ENTITIES and entry.entity_total == 3 and entry.line == 2
    assert find_entry([entry], "conll", "xx", "dev") is entry
    with pytest.raises(KeyError, match="conll/xx/test"):
        find_entry([entry], "conll", "xx", "test")


def test_manifest_defaults_to_utf8_bio(tmp_path):
    (entry,) = read_manifest(make_root(tmp_path, fmt="tab-separated 2 columns (token NER); BIO; UTF-8") / "MANIFEST.tsv")
    assert (entry.encoding, entry.scheme, entry.separator, entry.columns) == ("UTF-8", "BIO", "tab", 2)


def test_manifest_rejects_inconsistent_total(tmp_path):
    root = make_root(tmp_path)
    text = (root / "MANIFEST.tsv").read_text().replace("\t3\tMISC=1", "\t4\tMISC=1")
    (root / "MANIFEST.tsv").write_text(text)
    with pytest.raises(GlodeInputError, match=r"MANIFEST.tsv:2: entity_total 4"):
        read_manifest(root / "MANIFEST.tsv")


def test_checksum(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"abc")
    assert sha256_of(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    verify_checksum(path, "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD")
    with pytest.raises(GlodeInputError, match="f.txt: sha256 mismatch"):
        verify_checksum(path, "0" * 64)


# --- data helpers ---------------------------------------------------------------------------


def test_label_sets():
    assert DEFAULT_ENTITY_TYPES == {"conll": ["PER", "LOC", "ORG", "MISC"], "wikiann": ["PER", "LOC", "ORG"]}
    assert class_names(["PER", "LOC", "ORG"]) == ["O", "PER", "LOC", "ORG"]


# --- prepare: outputs -------------------------------------------------------------------------


def test_prepare_source_writes_sentences(tmp_path):
    root = make_root(tmp_path)
    out = tmp_path / "out" / "dev.parquet"
    log_file = tmp_path / "logs" / "prepare.log"
    assert run_prepare(root, out, "--log", str(log_file)) == 0
    logged = log_file.read_text()
    assert "2 sentences" in logged and "3 entities" in logged and "sha256 ok" in logged
    schema = pq.read_schema(out)
    assert [f.name for f in schema] == ["sent_id", "line", "tokens", "tags"]
    assert str(schema.field("sent_id").type) == "int64" and str(schema.field("tokens").type).startswith("list<")
    df = load_sentences(out)
    assert df["sent_id"].tolist() == [0, 1]
    assert df["line"].tolist() == [3, 7]
    assert df["tokens"].tolist() == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert df["tags"].tolist() == [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"]]
    meta = read_parquet_metadata(out)
    assert meta == df.attrs["glode"]
    assert meta["labeled"] is True and "hidden_gold" not in meta
    assert meta["entity_types"] == ["PER", "LOC", "ORG", "MISC"]
    assert {k: meta[k] for k in ("dataset", "lang", "split", "role", "scheme", "encoding")} == {
        "dataset": "conll", "lang": "xx", "split": "dev", "role": "source", "scheme": "BIO", "encoding": "UTF-8",
    }
    assert meta["sha256"] == sha256_of(root / "conll/xx/dev.txt")
    assert meta["source_path"].endswith("conll/xx/dev.txt")
    assert not list(out.parent.glob(".*.tmp"))


def test_prepare_target_train_hides_gold(tmp_path):
    root = make_root(tmp_path, split="train")
    out, gold = tmp_path / "data_out" / "train.parquet", tmp_path / "gold" / "train.gold.parquet"
    assert run_prepare(root, out, "--gold-out", str(gold), split="train", role="target") == 0
    words = load_sentences(out)
    assert "tags" not in words.columns
    assert words["tokens"].tolist() == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    assert read_parquet_metadata(out)["labeled"] is False
    assert [f.name for f in pq.read_schema(gold)] == ["sent_id", "tokens", "tags"]
    meta = read_parquet_metadata(gold)
    assert meta["hidden_gold"] is True and meta["role"] == "target"
    with pytest.raises(GlodeInputError, match="hidden-gold"):
        load_sentences(gold)
    gold_df = load_hidden_gold(gold)
    assert gold_df["tags"].tolist() == [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"]]
    with pytest.raises(GlodeInputError, match="not a hidden-gold file"):
        load_hidden_gold(out)


def test_prepare_target_dev_keeps_tags(tmp_path):
    out = tmp_path / "dev.parquet"
    assert run_prepare(make_root(tmp_path), out, role="target") == 0
    assert "tags" in pd.read_parquet(out).columns and read_parquet_metadata(out)["labeled"] is True


def test_prepare_iob1_latin1(tmp_path):
    content = "-DOCSTART- -X- -X- -X- O\n\nGroßer groß NN I-NC I-MISC\nPreis preis NN I-NC I-MISC\nin in APPR B-PC O\nMünchen m NE I-NC I-LOC\n"
    root = make_root(
        tmp_path, content.encode("iso-8859-1"), sentences=1, entities={"MISC": 1, "LOC": 1},
        fmt="space-separated 5 columns (word lemma POS chunk NER); IOB1; ISO-8859-1; -DOCSTART- lines",
    )
    out = tmp_path / "dev.parquet"
    assert run_prepare(root, out) == 0
    df = load_sentences(out)
    assert df["tokens"][0] == ["Großer", "Preis", "in", "München"]
    assert df["tags"][0] == ["B-MISC", "I-MISC", "O", "B-LOC"]
    assert read_parquet_metadata(out)["scheme"] == "IOB1" and read_parquet_metadata(out)["encoding"] == "ISO-8859-1"


# --- prepare: errors leave no output ----------------------------------------------------------

PARSE_ERRORS = {
    # name: (content, entity types, expected line, message fragment)
    "too few columns": ("EU NNP B-ORG\n\nlonely\n", ("PER", "LOC", "ORG", "MISC"), 3, "at least 2 columns"),
    "bad tag": ("EU NNP B-ORG\nx y Q-ORG\n", ("PER", "LOC", "ORG", "MISC"), 2, "is not O, B-X or I-X"),
    "type outside label set": ("a b O\n\nx y O\nEU NNP B-MISC\n", ("PER", "LOC", "ORG"), 4, "entity type 'MISC'"),
    "undecodable bytes": (b"a b O\nM\xfcnchen NE B-LOC\n", ("PER", "LOC", "ORG", "MISC"), 2, "cannot be decoded"),
    "empty file": (b"", ("PER", "LOC", "ORG", "MISC"), 1, "no sentences"),
}


@pytest.mark.parametrize("name", list(PARSE_ERRORS))
@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "stale-output"])
def test_prepare_parse_errors_leave_no_output(tmp_path, name, stale):
    content, types, line, fragment = PARSE_ERRORS[name]
    root = make_root(tmp_path, content)
    out = tmp_path / "out" / "dev.parquet"
    if stale:
        out.parent.mkdir()
        out.write_bytes(b"an earlier run's output")
    with pytest.raises(GlodeInputError) as err:
        run_prepare(root, out, types=types)
    assert f"{root / 'conll/xx/dev.txt'}:{line}: " in str(err.value)
    assert fragment in str(err.value)
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())  # no temporary file either


def test_prepare_target_train_error_leaves_neither_output(tmp_path):
    root = make_root(tmp_path, "EU NNP B-ORG\nx y Q-ORG\n", split="train")
    out, gold = tmp_path / "train.parquet", tmp_path / "gold.parquet"
    out.write_bytes(b"stale")
    gold.write_bytes(b"stale")
    with pytest.raises(GlodeInputError, match=":2: "):
        run_prepare(root, out, "--gold-out", str(gold), split="train", role="target")
    assert not out.exists() and not gold.exists()


def test_prepare_sentence_count_mismatch(tmp_path):
    root = make_root(tmp_path, sentences=3)
    out = tmp_path / "dev.parquet"
    with pytest.raises(GlodeInputError, match="2 sentences parsed, manifest says 3") as err:
        run_prepare(root, out)
    assert "dev.txt" in str(err.value) and "MANIFEST.tsv line 2" in str(err.value)
    assert not out.exists()


def test_prepare_entity_count_mismatch(tmp_path):
    root = make_root(tmp_path, entities={"MISC": 1, "ORG": 1, "PER": 2})
    with pytest.raises(GlodeInputError, match="manifest says"):
        run_prepare(root, tmp_path / "dev.parquet")
    assert not (tmp_path / "dev.parquet").exists()


def test_prepare_checksum_mismatch(tmp_path):
    root = make_root(tmp_path)
    (root / "conll/xx/dev.txt").write_text(GOOD.replace("Peter", "Petra"))
    out = tmp_path / "dev.parquet"
    with pytest.raises(GlodeInputError, match="dev.txt: sha256 mismatch"):
        run_prepare(root, out)
    assert not out.exists()


def test_prepare_missing_file_without_download(tmp_path):
    root = make_root(tmp_path, write_file=False)
    out = tmp_path / "dev.parquet"
    with pytest.raises(GlodeInputError) as err:
        run_prepare(root, out)
    message = str(err.value)
    assert str(root / "conll/xx/dev.txt") in message and "--download" in message
    assert not out.exists()


def test_prepare_gold_out_required_for_target_train(tmp_path):
    root = make_root(tmp_path, split="train")
    out = tmp_path / "train.parquet"
    out.write_bytes(b"stale")
    with pytest.raises(SystemExit):
        run_prepare(root, out, split="train", role="target")
    assert not out.exists()


def test_prepare_unknown_split(tmp_path):
    with pytest.raises(GlodeInputError, match="no manifest entry for conll/xx/test"):
        run_prepare(make_root(tmp_path), tmp_path / "t.parquet", split="test")


# --- downloads --------------------------------------------------------------------------------


def test_fetch_downloads_file_url(tmp_path):
    source = tmp_path / "remote" / "dev-xx.tsv"
    source.parent.mkdir()
    source.write_text(GOOD)
    root = make_root(tmp_path, write_file=False, url=source.as_uri())
    (entry,) = read_manifest(root / "MANIFEST.tsv")
    downloads = tmp_path / "downloads"
    path = fetch(entry, root, downloads, allow_download=True)
    assert path == downloads / "conll/xx/dev.txt" and path.read_text() == GOOD
    assert not list(path.parent.glob(".*"))
    source.unlink()  # the second call finds the earlier download
    assert fetch(entry, root, downloads, allow_download=False) == path


def test_fetch_downloads_zip_member(tmp_path):
    archive = tmp_path / "remote" / "conll2002.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("conll2002/README", "other member")
        zf.writestr("conll2002/esp.testa", GOOD)
    root = make_root(tmp_path, write_file=False, url=archive.as_uri() + "#conll2002/esp.testa")
    (entry,) = read_manifest(root / "MANIFEST.tsv")
    path = fetch(entry, root, allow_download=True)  # default download dir: the data root
    assert path == root / "conll/xx/dev.txt" and path.read_text() == GOOD
    assert sorted(p.name for p in path.parent.iterdir()) == ["dev.txt"]  # no zip or temp file left


def test_fetch_zip_without_member(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("x", "y")
    root = make_root(tmp_path, write_file=False, url=archive.as_uri() + "#conll2002/esp.testa")
    (entry,) = read_manifest(root / "MANIFEST.tsv")
    with pytest.raises(GlodeInputError, match="no member 'conll2002/esp.testa'"):
        fetch(entry, root, tmp_path / "dl", allow_download=True)
    assert not (tmp_path / "dl" / "conll/xx/dev.txt").exists()


def test_download_with_wrong_checksum_lands_nothing(tmp_path):
    source = tmp_path / "remote.tsv"
    source.write_text(GOOD.replace("Peter", "Petra"))  # not the bytes the manifest describes
    root = make_root(tmp_path, write_file=False, url=source.as_uri())
    (entry,) = read_manifest(root / "MANIFEST.tsv")
    with pytest.raises(GlodeInputError, match="sha256 mismatch"):
        fetch(entry, root, tmp_path / "dl", allow_download=True)
    target_dir = tmp_path / "dl" / "conll/xx"
    assert not target_dir.exists() or not list(target_dir.iterdir())


def test_download_failure_is_clear(tmp_path):
    root = make_root(tmp_path, write_file=False, url=(tmp_path / "nowhere.txt").as_uri())
    (entry,) = read_manifest(root / "MANIFEST.tsv")
    with pytest.raises(GlodeInputError, match="download failed"):
        fetch(entry, root, tmp_path / "dl", allow_download=True)


def test_prepare_with_download(tmp_path):
    archive = tmp_path / "remote" / "conll2002.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("conll2002/esp.testa", GOOD)
    root = make_root(tmp_path, write_file=False, url=archive.as_uri() + "#conll2002/esp.testa")
    out = tmp_path / "dev.parquet"
    downloads = tmp_path / "dl"
    assert run_prepare(root, out, "--download", "--download-dir", str(downloads)) == 0
    assert read_parquet_metadata(out)["source_path"] == str(downloads / "conll/xx/dev.txt")
    assert len(load_sentences(out)) == 2


# --- demo-scale sampling ------------------------------------------------------------------------

def test_sample_indices_seeded_in_file_order():
    first = prepare.sample_indices(100, 10, seed=3)
    assert first == prepare.sample_indices(100, 10, seed=3) and first == sorted(first) and len(set(first)) == 10
    assert first != prepare.sample_indices(100, 10, seed=4)
    assert prepare.sample_indices(5, 0, seed=1) == [0, 1, 2, 3, 4]
    assert prepare.sample_indices(5, 9, seed=1) == [0, 1, 2, 3, 4]


def test_prepare_samples_train_but_checks_whole_file(tmp_path):
    root = make_root(tmp_path, split="train")
    out, gold = tmp_path / "train.parquet", tmp_path / "gold.parquet"
    assert run_prepare(root, out, "--gold-out", str(gold), "--max-sentences", "1", "--sample-seed", "0", split="train", role="target") == 0
    words, hidden = load_sentences(out), load_hidden_gold(gold)
    assert len(words) == 1 and words["sent_id"].tolist() == hidden["sent_id"].tolist()
    kept = words["sent_id"].iat[0]
    assert words["tokens"].iat[0] == [["EU", "rejects", "German"], ["Peter", "Blackburn"]][kept]
    assert read_parquet_metadata(out)["sample"] == {"max_sentences": 1, "seed": 0, "of": 2}


def test_prepare_never_samples_test_split(tmp_path):
    out = tmp_path / "dev.parquet"
    assert run_prepare(make_root(tmp_path), out, "--max-sentences", "1") == 0
    assert len(load_sentences(out)) == 2


def test_prepare_records_the_tokenisation_for_later_stages(tmp_path):
    root = make_root(tmp_path)
    out = tmp_path / "dev.parquet"
    assert run_prepare(root, out, "--tokenisation", "joined") == 0
    assert read_parquet_metadata(out)["tokenisation"] == "joined"
    assert load_sentences(out).attrs["glode"]["tokenisation"] == "joined"  # what spans and batching read
    assert run_prepare(root, out) == 0
    assert read_parquet_metadata(out)["tokenisation"] == "words"
