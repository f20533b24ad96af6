"""Model cards (glode.model_card): the README.md of a model directory, built from a
glode_training.json-style summary and tiny sentences files. No model is loaded."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest
import yaml

import glode
from glode.io import GlodeInputError, write_parquet
from glode.model_card import data_description, model_card_text, system_name, write_model_card

SOURCE_SHA = "a" * 64
TARGET_SHA = "b" * 64
SECTIONS = ("## Model", "## Training data", "## Backbone and settings", "## Test scores", "## Usage", "## Limits")


def sentences_table(n: int, labeled: bool) -> pa.Table:
    columns = {"sent_id": pa.array(range(n), pa.int64()), "line": pa.array(range(1, n + 1), pa.int64()),
               "tokens": pa.array([["Ana", "vive", "."]] * n, pa.list_(pa.string()))}
    if labeled:
        columns["tags"] = pa.array([["B-PER", "O", "O"]] * n, pa.list_(pa.string()))
    return pa.table(columns)


@pytest.fixture
def data(tmp_path) -> list[dict]:
    """A labeled English source file (3 sentences) and an unlabeled Spanish target sample (2 of 10)."""
    source, target = tmp_path / "en_train.parquet", tmp_path / "es_train.parquet"
    write_parquet(sentences_table(3, labeled=True), source, {
        "dataset": "conll", "lang": "en", "split": "train", "role": "source", "labeled": True,
        "source_path": "/data/conll/en/train.txt", "sha256": SOURCE_SHA, "entity_types": ["PER", "LOC"]})
    write_parquet(sentences_table(2, labeled=False), target, {
        "dataset": "conll", "lang": "es", "split": "train", "role": "target", "labeled": False,
        "source_path": "/data/conll/es/train.txt", "sha256": TARGET_SHA, "sample": {"max_sentences": 2, "seed": 0, "of": 10}})
    return [data_description(source), data_description(target)]


def source_summary(use_mlm: bool = True) -> dict:
    """What glode.train_source.source_summary writes, trimmed to the keys a card reads (and a few more)."""
    return {
        "options": {"seed": 7, "lr": 1e-05, "epochs": 2, "use_mlm": use_mlm, "batch_size": 8},
        "span_settings": {"max_span_len": 4, "max_seq_len": 128},
        "inputs": {"source_sentences": "en_train.parquet", "target_sentences": "es_train.parquet", "backbone": "resources/multilingual-e5-small"},
        "classes": ["O", "PER", "LOC"],
        "source_sentences": 3, "target_sentences": 2, "updates": 1, "seconds": 1.0,
    }


def target_summary() -> dict:
    """glode.train_target's trainer record + summary keys, trimmed."""
    summary = source_summary()
    summary["options"] = {"seed": 7, "num_epochs": 5, "aux_task": "mlm", "denoise": True}
    summary.update(epoch=4, num_epochs=5, denoise_config={"use_global": True, "use_local": False, "multiple_directions": True})
    return summary


def tokencls_summary() -> dict:
    return {"system": "source-tokencls", "options": {"seed": 7, "use_mlm": False}, "max_seq_len": 128,
            "labels": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], "inputs": {"source_sentences": "en_train.parquet", "backbone": "e5"}}


SCORES = {"seqeval": {"f1": 0.712345, "precision": 0.70, "recall": 0.7249, "gold_entities": 40}, "counts": {"gold_entities": 40}}
STATS = {"gold_entities": 40, "unreachable_too_long": 3, "unreachable_truncated": 2, "max_span_len": 4, "max_seq_len": 128}


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def section(card: str, heading: str) -> str:
    """The text under `heading`, up to the next `## ` heading."""
    return card.split(heading + "\n", 1)[1].split("\n## ", 1)[0]


def test_front_matter_parses_as_yaml(data):
    meta = front_matter(model_card_text(source_summary(), data=data))
    assert meta == {"library_name": "glode", "language": ["en", "es"], "tags": ["token-classification", "ner", "cross-lingual"],
                    "pipeline_tag": "token-classification"}


def test_language_codes_stay_strings(data):
    data[1]["lang"] = "no"  # bare YAML would read Norwegian's code as false
    assert front_matter(model_card_text(source_summary(), data=data))["language"] == ["en", "no"]


def test_card_holds_every_section_and_value(data):
    card = model_card_text(source_summary(), data=data, scores=SCORES, unreachable=STATS, version="9.9.9", model_dir="runs/model")
    for heading in (*SECTIONS, "## Entities out of reach"):
        assert heading + "\n" in card
    model = section(card, "## Model")
    assert "glode train-source" in model and "source-mlm" in model and "PER, LOC" in model
    rows = section(card, "## Training data")
    assert re.search(rf"\| source \| conll \| en \| train \| 3 \| true \| .* \| {SOURCE_SHA} \|", rows)
    assert re.search(rf"\| target \| conll \| es \| train \| 2 \(seeded sample of 10, seed 0\) \| false \| .* \| {TARGET_SHA} \|", rows)
    settings = section(card, "## Backbone and settings")
    assert "resources/multilingual-e5-small" in settings and "- seed: 7" in settings and "9.9.9" in settings
    assert "| lr | 1e-05 |" in settings and "| use_mlm | true |" in settings
    assert "| 71.23 | 70.00 | 72.49 | 40 |" in section(card, "## Test scores")
    # 3 too long + 2 truncated of 40 gold entities
    assert "5 of 40 gold entities (12.5%) are longer than 4 words" in section(card, "## Entities out of reach")
    assert "- Trained on conll entity types only (PER, LOC)" in section(card, "## Limits")


def test_version_defaults_to_the_package(data):
    assert f"- glode version: {glode.__version__}\n" in model_card_text(source_summary(), data=data)


def test_usage_is_three_code_lines(data):
    usage = section(model_card_text(source_summary(), data=data, model_dir="runs/model"), "## Usage")
    code = [line for block in re.findall(r"```\w*\n(.*?)```", usage, re.S) for line in block.splitlines()]
    assert code == [
        "glode tag --model runs/model --input text.txt --out entities.jsonl",
        'from glode import Tagger; Tagger.load("runs/model").tag(["..."])',
        'nlp = spacy.blank("es"); nlp.add_pipe("glode_ner", config={"model": "runs/model"})',
    ]


def test_unscored_card_says_where_scores_go(data):
    card = model_card_text(source_summary(use_mlm=False), data=data)
    scores = section(card, "## Test scores")
    assert "not scored" in scores and "results/eval/conll/es/source-plain/seed7/metrics.json" in scores
    assert "## Entities out of reach" not in card


def test_splitter_is_named_when_recorded(data):
    summary = {**source_summary(), "splitter": "whitespace"}
    assert "splitter recorded in training: whitespace." in section(model_card_text(summary, data=data), "## Limits")
    spacy_record = {"library": "spacy", "version": "3.8.0", "lang": "es", "rules": "es", "pipeline": ["sentencizer"]}  # glode.textsplit's describe()
    summary = {**source_summary(), "splitter": spacy_record}
    assert "spaCy 3.8.0 rules for `es` (pipeline: sentencizer)" in section(model_card_text(summary, data=data), "## Limits")
    assert "No sentence or word splitter is recorded" in model_card_text(source_summary(), data=data)


@pytest.mark.parametrize("summary, system, stage", [
    (source_summary(use_mlm=True), "source-mlm", "glode train-source"),
    (source_summary(use_mlm=False), "source-plain", "glode train-source --use-mlm false"),
    (target_summary(), None, "glode train-target"),
    ({**target_summary(), "variant": "glode"}, "target-glode", "glode train-target"),
    (tokencls_summary(), "source-tokencls", "glode train-tokencls"),
])
def test_system_is_read_from_the_summary(data, summary, system, stage):
    assert system_name(summary) == system
    assert stage in section(model_card_text(summary, data=data), "## Model")


def test_target_card_describes_its_training(data):
    card = model_card_text(target_summary(), data=data)
    model = section(card, "## Model")
    assert "after epoch 5 of 5" in model and "denoising at the global level," in model
    assert "| use_local | false |" in section(card, "## Backbone and settings")
    assert "pseudo labels" in section(card, "## Limits")


@pytest.mark.parametrize("variant, method, preset", [
    ("glode", "paper", "the paper's text"),
    ("wo_denoising", "paper", "the paper's text"),
    ("glode_authors", "authors", "the authors' code"),
])
def test_target_card_names_its_variant_and_method(data, variant, method, preset):
    """The variant train-target recorded (--variant) names the system in the title, the Model
    section and the scores' path; the method it ran is stated beside it."""
    summary = {**target_summary(), "variant": variant, "method": method, "method_deviations": {}}
    card = model_card_text(summary, data=data)
    assert f"\n# glode target-{variant} (conll, en -> es)\n" in card
    model = section(card, "## Model")
    assert f"- system: `target-{variant}`" in model
    assert f"- variant: `{variant}`, trained with method `{method}` ({preset})" in model
    assert f"- method: `{method}` ({preset})" in section(card, "## Behaviour and run health")
    assert f"`results/eval/conll/es/target-{variant}/seed7/metrics.json`" in section(card, "## Test scores")
    assert "<variant>" not in card


def test_target_card_of_an_unrecorded_variant_says_so_in_words(data):
    summary = {**target_summary(), "method": "authors"}
    card = model_card_text(summary, data=data)
    assert "<variant>" not in card and "target-None" not in card and "`None`" not in card
    assert "# glode target model, variant unknown (conll, en -> es)" in card
    model = section(card, "## Model")
    assert "- system: unknown (a target model's system is named after its variant, which was not recorded)" in model
    assert "- variant: unknown (not recorded when the model was trained), trained with method `authors` (the authors' code)" in model
    scores = section(card, "## Test scores")
    assert "under `results/eval/conll/es/`" in scores and "this model's variant was not recorded" in scores


def test_tokencls_card_counts_only_the_window(data):
    card = model_card_text(tokencls_summary(), data=data[:1], unreachable=STATS)
    assert "2 of 40 gold entities (5.0%) are past the window of 128 subwords" in card
    assert "PER, LOC" in section(card, "## Model")
    assert 'spacy.blank("en")' in card  # no target: the source language


def test_write_model_card_names_the_final_directory(tmp_path, data):
    tmp_dir, final = tmp_path / ".model.tmp", tmp_path / "model"
    tmp_dir.mkdir()
    path = write_model_card(tmp_dir, source_summary(), data=data, final_dir=final)
    text = path.read_text(encoding="utf-8")
    assert path == tmp_dir / "README.md" and f"--model {final} " in text and str(tmp_dir) not in text


def test_data_description(data, tmp_path):
    source, target = data
    assert source == {"role": "source", "dataset": "conll", "lang": "en", "split": "train", "path": str(tmp_path / "en_train.parquet"),
                      "source_path": "/data/conll/en/train.txt", "sha256": SOURCE_SHA, "sentences": 3, "labeled": True, "sample": None}
    assert target["sample"] == {"max_sentences": 2, "seed": 0, "of": 10} and target["labeled"] is False


def test_data_description_of_missing_or_broken_file(tmp_path):
    missing = tmp_path / "absent.parquet"
    with pytest.raises(GlodeInputError, match=re.escape(str(missing))):
        data_description(missing)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(GlodeInputError, match=re.escape(str(broken))):
        data_description(broken)
