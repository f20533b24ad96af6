"""Raw, untagged text as a target language's training data, and tagging raw text three ways.

Unit tests of the splitter (glode.textsplit) and of `glode prepare --format text|jsonl`; then the
whole flow end to end with the random `tiny_backbone`: a text file declared in a config overlay,
the plan (which says once that the language has no test file), the `models` target, and tagging
with the resulting model through the CLI, the Python API and spaCy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import module_scratch

from glode.io import GlodeInputError, read_parquet_metadata
from glode.textsplit import SplitSentence, Splitter, fit_window, read_raw_texts

BIN = Path(sys.executable).parent
FRENCH = ["Le fleuve Loire traverse Orléans, Tours et Nantes. L'Élysée est à Paris.", "", "Marie Curie vivait à Varsovie puis à Paris."]


def test_spacy_rules_split_punctuation_and_elision_with_offsets():
    (doc,) = Splitter("fr").split_docs([FRENCH[0]])
    assert [s.words for s in doc] == [["Le", "fleuve", "Loire", "traverse", "Orléans", ",", "Tours", "et", "Nantes", "."], ["L'", "Élysée", "est", "à", "Paris", "."]]
    for sentence in doc:
        assert [FRENCH[0][b:e] for b, e in zip(sentence.starts, sentence.ends)] == sentence.words


def test_chinese_is_split_into_characters_and_an_unknown_language_falls_back(caplog):
    (doc,) = Splitter("zh").split_docs(["北京是首都。"])
    assert [s.words for s in doc] == [list("北京是首都。")]
    with caplog.at_level("WARNING"):
        splitter = Splitter("qq")
    assert splitter.describe()["rules"] == "xx" and "multi-language" in caplog.text


def test_fit_window_cuts_a_long_sentence_into_pieces_that_fit():
    sentence = SplitSentence(list("abcdef"), [0, 2, 4, 6, 8, 10], [1, 3, 5, 7, 9, 11])
    # window 6 = <s> + 4 subwords + </s>; words of 2, 2, 1, 3, 5, 1 subwords
    pieces = fit_window(sentence, [2, 2, 1, 3, 5, 1], 6)
    assert [p.words for p in pieces] == [["a", "b"], ["c", "d"], ["e"], ["f"]]
    assert pieces[1].starts == [4, 6] and pieces[1].ends == [5, 7]


def test_raw_readers_name_the_file_and_line(tmp_path):
    text = tmp_path / "fr.txt"
    text.write_bytes(b"Paris\n\nLyon \xff\n")
    with pytest.raises(GlodeInputError, match=r"fr.txt:3: .* not UTF-8"):
        read_raw_texts(text, "text")
    lines = tmp_path / "fr.jsonl"
    lines.write_text('{"body": "Paris"}\n{"text": "Lyon"}\n', encoding="utf-8")
    with pytest.raises(GlodeInputError, match=r"fr.jsonl:2: no 'body' string"):
        read_raw_texts(lines, "jsonl", "body")
    lines.write_text('{"text": "Paris"}\n\n{"text": "Lyon"}\n', encoding="utf-8")
    assert read_raw_texts(lines, "jsonl") == [(1, "Paris"), (3, "Lyon")]


def prepare(tmp_path, tiny_backbone, path, *extra):
    from glode.prepare import main

    out = tmp_path / "out" / "train.parquet"
    argv = ["--file", str(path), "--dataset", "mine", "--lang", "fr", "--split", "train", "--role", "target", "--entity-types", "PER", "LOC",
            "--backbone", str(tiny_backbone), "--out", str(out), *extra]
    return main(argv), out


def test_prepare_raw_text_keeps_offsets_into_the_source_line(tmp_path, tiny_backbone):
    source = tmp_path / "fr.txt"
    source.write_text("\n".join(FRENCH) + "\n", encoding="utf-8")
    rc, out = prepare(tmp_path, tiny_backbone, source, "--format", "text")
    assert rc == 0
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["sent_id", "line", "tokens", "char_starts", "char_ends"]
    assert frame["line"].tolist() == [1, 1, 3] and frame["sent_id"].tolist() == [0, 1, 2]
    lines = {1: FRENCH[0], 3: FRENCH[2]}
    for row in frame.itertuples():
        assert [lines[row.line][b:e] for b, e in zip(row.char_starts, row.char_ends)] == list(row.tokens)
    meta = read_parquet_metadata(out)
    assert meta["labeled"] is False and meta["format"] == "text" and meta["splitter"]["rules"] == "fr"
    assert meta["counts"] == {"lines": 2, "sentences": 3, "words": 10 + 6 + 9, "cut_sentences": 0, "moved_words": 0}


def test_prepare_raw_text_cuts_long_sentences_with_a_warning(tmp_path, tiny_backbone, capfd):
    source = tmp_path / "long.jsonl"
    source.write_text(json.dumps({"text": " ".join(["Paris"] * 300)}) + "\n", encoding="utf-8")
    rc, out = prepare(tmp_path, tiny_backbone, source, "--format", "jsonl", "--max-seq-len", "64")
    assert rc == 0 and "1 of 1 sentences are longer than the encoder window of 64 subwords" in capfd.readouterr().err
    frame = pd.read_parquet(out)
    assert sum(map(len, frame["tokens"])) == 300 and len(frame) > 1


@pytest.mark.parametrize("content, problem", [(b"", "is empty"), (b"\n  \n\t\n", "is empty"), (b"ok\n\xff\n", r":2: .*not UTF-8")])
def test_prepare_refuses_bad_raw_text_and_writes_nothing(tmp_path, tiny_backbone, content, problem):
    source = tmp_path / "bad.txt"
    source.write_bytes(content)
    with pytest.raises(GlodeInputError, match=problem):
        prepare(tmp_path, tiny_backbone, source, "--format", "text")
    assert not (tmp_path / "out" / "train.parquet").exists()


def test_unknown_format_and_raw_test_files_are_config_errors():
    from glode.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"'datasets.wikiann.files.fr.train.format': 'txt' is not one of"):
        load_config({"datasets": {"wikiann": {"targets": ["fr"], "files": {"fr": {"train": {"path": "fr.txt", "format": "txt"}}}}}})
    with pytest.raises(ConfigError, match="only for a target language's train split"):
        load_config({"datasets": {"wikiann": {"targets": ["fr"], "files": {"fr": {"train": "fr.conll", "test": {"path": "t.txt", "format": "text"}}}}}})


# -- end to end ------------------------------------------------------------------------------


def raw_text_config(data_root: Path, backbone: Path, text_file: Path) -> dict:
    """The real config, shrunk (as tests/test_pipeline.py), with a French raw-text target of WikiAnn."""
    from glode.config import load_config

    fast = {"epochs": 1, "batch_size": 4, "grad_accumulation": 1, "lr": 1e-3, "warmup_steps": 0, "device": "cpu"}
    config = load_config({
        "data_root": str(data_root), "backbone": str(backbone), "offline_backbone": str(backbone), "max_train_sentences": 24, "seeds": [1],
        "source": fast, "target": {**fast, "epochs": 2}, "denoise": {"k": 8, "update_start_epoch": 1}, "target_init": "source",
    })  # fmt: skip
    config["datasets"] = {"wikiann": {**config["datasets"]["wikiann"], "targets": ["fr"], "files": {"fr": {"train": {"path": str(text_file), "format": "text"}}}}}
    config["variants"] = {"glode": {}}
    return config


@pytest.fixture(scope="module")
def raw_text_run(project_root, data_root, tiny_backbone, tmp_path_factory):
    with module_scratch(tmp_path_factory, "raw_text") as workdir:
        text_file = workdir / "fr.txt"
        text_file.write_text("\n".join(FRENCH * 10) + "\n", encoding="utf-8")
        config = workdir / "config.yaml"
        config.write_text(yaml.safe_dump(raw_text_config(data_root, tiny_backbone, text_file)))
        cmd = [str(BIN / "snakemake"), "--snakefile", str(project_root / "Snakefile"), "--directory", str(workdir), "--workflow-profile", "none",
               "--cores", "2", "models", "--configfile", str(config)]
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
        plan = subprocess.run([*cmd, "-n"], cwd=project_root, env=env, capture_output=True, text=True)
        run = subprocess.run(cmd, cwd=project_root, env=env, capture_output=True, text=True)
        yield workdir, plan, run


def test_the_plan_says_once_that_the_language_is_not_scored(raw_text_run):
    _, plan, _ = raw_text_run
    assert plan.returncode == 0, plan.stderr[-3000:]
    out = plan.stdout + plan.stderr
    assert out.count("wikiann/fr has no test file") == 1
    assert "rule evaluate" not in out and "label_quality" not in out and "rule tables" not in out
    assert "rule prepare_raw_target" in out and "rule train_target_epoch" in out


def test_models_are_trained_from_raw_text_with_cards_and_the_splitter(raw_text_run):
    workdir, _, run = raw_text_run
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    model = workdir / "results/target/wikiann/fr/glode/seed1/model"
    summary = json.loads((model / "glode_training.json").read_text())
    assert summary["splitter"]["lang"] == "fr" and summary["splitter"]["library"] == "spacy"
    card = (model / "README.md").read_text()
    assert "results/target/wikiann/fr/glode/seed1/model" in card and "glode_ner" in card
    assert not (workdir / "results/analysis/gold/wikiann/fr").exists()


def test_tag_with_the_cli_the_api_and_spacy(raw_text_run, tmp_path):
    workdir, _, run = raw_text_run
    assert run.returncode == 0
    model = workdir / "results/target/wikiann/fr/glode/seed1/model"
    text = FRENCH[0]
    # the Python API: one record per text, offsets into it, words as the splitter gives them
    from glode import Tagger

    tagger = Tagger.load(model, device="cpu", quiet=True)
    (record,) = tagger.tag([text])
    assert record["text"] == text and record["tokens"][4:6] == ["Orléans", ","] and record["tokens"][10] == "L'"
    for entity in record["entities"]:
        assert text[entity["start_char"] : entity["end_char"]] == entity["text"]
        assert 0 <= entity["start_token"] < entity["end_token"] <= len(record["tokens"])
    # the CLI: the same records, with ids
    source = tmp_path / "in.txt"
    source.write_text(text + "\n", encoding="utf-8")
    from glode.tag import main

    assert main(["--model", str(model), "--input", str(source), "--out", str(tmp_path / "out.jsonl"), "--device", "cpu", "--quiet"]) == 0
    (cli,) = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert cli == {"id": 0, **record}
    # spaCy, found through the entry point: doc.ents on spaCy's tokens, probabilities in doc.spans
    import spacy

    nlp = spacy.blank("fr")
    nlp.add_pipe("glode_ner", config={"model": str(model)})
    doc = nlp(text)
    expected = [(e["start_char"], e["end_char"], e["type"]) for e in record["entities"]]
    assert [(s.start_char, s.end_char, s.label_) for s in doc.ents] == sorted(expected)
    assert [s._.glode_prob for s in doc.spans["glode"]] == [e["prob"] for e in sorted(record["entities"], key=lambda e: e["start_char"])]
