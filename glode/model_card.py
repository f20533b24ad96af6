"""Model cards: the README.md of every model directory that a training stage writes.

A card follows the Hugging Face model-card layout: a YAML front-matter block (library, languages,
tags, pipeline) between `---` lines, then Markdown sections a reader can follow top to bottom:
what the model is, the data it was trained on (with counts and checksums), the backbone and
settings, its test scores (or where the workflow puts them), the gold entities it cannot reach,
how to use it, and its limits.

Everything on the card comes from three places: the model's `glode_training.json` (the summary
that `glode train-source`, `glode train-target` and `glode train-tokencls` write), the metadata of
the sentences files it was trained on (`data_description`), and, where they exist, the
`metrics.json` of `glode evaluate` and the spans `.stats.json` of `glode spans`.

    card = model_card_text(summary, data=[data_description(p) for p in sentence_files])
    write_model_card(tmp_dir, summary, data=..., final_dir=out)   # inside atomic_dir(out)
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any, Sequence

import glode
from glode.io import GlodeInputError, read_parquet_metadata, write_text
from glode.methods import METHOD_TEXT

CARD_FILE = "README.md"
# Where the workflow writes a system's test scores (README "What runs", stage `evaluate`).
SCORES_PATH = "results/eval/{dataset}/{lang}/{system}/seed{seed}/metrics.json"
CARD_TAGS = ("token-classification", "ner", "cross-lingual")
MISSING = "-"  # a table cell whose value is unknown

# The three kinds of model directory a training stage writes.
SOURCE, TARGET, TOKENCLS = "source", "target", "tokencls"


# -- what the summary says ----------------------------------------------------------------------


def model_kind(summary: dict) -> str:
    """SOURCE, TARGET or TOKENCLS: which stage wrote this `glode_training.json`.

    train-tokencls names its system; train-target's summary is its trainer record (epoch,
    num_epochs, denoise_config: glode.train_target.trainer_record); anything else is
    train-source's (glode.train_source.source_summary)."""
    if summary.get("system") == "source-tokencls":
        return TOKENCLS
    options = summary.get("options") or {}
    if "variant" in summary or "epoch" in summary or "denoise_config" in summary or "num_epochs" in options:
        return TARGET
    return SOURCE


def target_variant(summary: dict) -> str | None:
    """The variant a target model was trained as: `variant` of its summary (`glode train-target
    --variant`, which the workflow sets; without the flag, read from the workflow's output paths:
    glode.train_target.resolve_variant), or None where nothing recorded it."""
    return summary.get("variant") or None


def method_of(summary: dict) -> str | None:
    """The behaviour preset a target model trained with (`method`: a name of glode.methods.METHODS), if recorded."""
    return summary.get("method") or (summary.get("options") or {}).get("method")


def system_name(summary: dict) -> str | None:
    """The model's system as the workflow names it (results/eval/.../{system}/...).

    A target model's system is `target-{variant}`, from the variant its summary records; the
    same options can belong to two variants (glode and wo_mlm_init differ only in their initial
    labels), so an unrecorded variant is not guessed: the system is then None (unknown)."""
    kind = model_kind(summary)
    if kind == TOKENCLS:
        return "source-tokencls"
    if kind == TARGET:
        variant = target_variant(summary)
        return f"target-{variant}" if variant else None
    return "source-mlm" if (summary.get("options") or {}).get("use_mlm", True) else "source-plain"


def entity_types(summary: dict) -> list[str]:
    """The entity types the model predicts, in class order, without O.

    Span models record their classes ("O" first); the token classifier its BIO labels."""
    if model_kind(summary) == TOKENCLS:
        labels = summary.get("labels") or []
        return [label[2:] for label in labels if label.startswith("B-")]
    return [c for c in summary.get("classes") or [] if c != "O"]


def backbone_of(summary: dict) -> str | None:
    return (summary.get("inputs") or {}).get("backbone") or summary.get("backbone")


def span_limits(summary: dict) -> tuple[int | None, int | None]:
    """(max_span_len, max_seq_len) the model was trained with; a token classifier has no span
    length (None) and records its window at the top level."""
    settings = summary.get("span_settings") or {}
    return settings.get("max_span_len"), settings.get("max_seq_len", summary.get("max_seq_len"))


def seed_of(summary: dict) -> Any:
    return (summary.get("options") or {}).get("seed")


def entry_with_role(data: Sequence[dict], role: str) -> dict | None:
    """The first data entry of this role ("source" or "target"), or None."""
    return next((entry for entry in data if entry.get("role") == role), None)


def card_language(data: Sequence[dict]) -> str | None:
    """The language a user will tag: the target's, or the source's when there is no target."""
    entry = entry_with_role(data, "target") or entry_with_role(data, "source")
    return entry.get("lang") if entry else None


def languages(data: Sequence[dict]) -> list[str]:
    """Every language of the training data once, source languages first."""
    ordered = sorted(data, key=lambda entry: entry.get("role") != "source")
    return list(dict.fromkeys(entry["lang"] for entry in ordered if entry.get("lang")))


# -- the training data --------------------------------------------------------------------------

DATA_KEYS = ("role", "dataset", "lang", "split", "source_path", "sha256", "labeled", "sample")


def data_description(path: os.PathLike | str) -> dict:
    """What the card says about one sentences Parquet file of `glode prepare`: its metadata
    (docs/data-formats.md "Sentences"; missing keys are None), its path and its row count."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise GlodeInputError(path, "no such sentences file: cannot describe the model's training data")
    try:
        metadata = read_parquet_metadata(path)
        sentences = pq.ParquetFile(path).metadata.num_rows
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError; JSON errors too
        raise GlodeInputError(path, f"not a readable sentences Parquet file ({exc})") from exc
    description = {key: metadata.get(key) for key in DATA_KEYS}
    description.update(path=str(path), sentences=sentences)
    return description


def spans_stats_of(summary: dict) -> dict | None:
    """The `.stats.json` of the spans the model was trained on (the target's, else the source's),
    where it exists beside the spans Parquet (glode spans writes NAME.parquet and NAME.stats.json)."""
    inputs = summary.get("inputs") or {}
    for name in ("target_spans", "source_spans"):
        if inputs.get(name):
            stats = Path(inputs[name]).with_suffix(".stats.json")
            if stats.is_file():
                return json.loads(stats.read_text(encoding="utf-8"))
    return None


def training_data(summary: dict) -> list[dict]:
    """data_description of the sentences files the summary's inputs name (source, then target)."""
    inputs = summary.get("inputs") or {}
    paths = [inputs.get(name) for name in ("source_sentences", "target_sentences")]
    return [data_description(path) for path in paths if path]


# -- Markdown helpers ---------------------------------------------------------------------------


def format_value(value: Any) -> str:
    """A setting as it would be written on the command line: strings bare, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def cell(value: Any) -> str:
    """A table cell: unknown values as MISSING, and pipes escaped so they cannot split the row."""
    if value is None or value == "":
        return MISSING
    return format_value(value).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return lines


def percent(part: float | None) -> str:
    """A seqeval score (0..1) as percentage points with 2 decimals."""
    return MISSING if part is None else f"{100 * part:.2f}"


# -- the sections -------------------------------------------------------------------------------


def front_matter(data: Sequence[dict]) -> list[str]:
    # Language codes are written as JSON strings (valid YAML): bare, Norwegian's `no` would
    # read back as the boolean false.
    langs = ", ".join(json.dumps(lang) for lang in languages(data))
    tags = ", ".join(CARD_TAGS)
    return ["---", "library_name: glode", f"language: [{langs}]", f"tags: [{tags}]", "pipeline_tag: token-classification", "---"]


def title(summary: dict, data: Sequence[dict]) -> list[str]:
    source, target = entry_with_role(data, "source"), entry_with_role(data, "target")
    route = " -> ".join(entry["lang"] for entry in (source, target) if entry and entry.get("lang"))
    dataset = (target or source or {}).get("dataset")
    parts = [part for part in (dataset, route) if part]
    name = system_name(summary) or "target model, variant unknown"
    return [f"# glode {name}" + (f" ({', '.join(parts)})" if parts else "")]


def model_description(summary: dict) -> str:
    """One paragraph: which stage trained the model, and on what objective."""
    kind, options = model_kind(summary), summary.get("options") or {}
    if kind == TOKENCLS:
        return ("A token classifier (`AutoModelForTokenClassification`, one BIO tag per word) trained by "
                "`glode train-tokencls` on the labeled source sentences only: the zero-shot baseline `source-tokencls`.")
    if kind == SOURCE and options.get("use_mlm", True):
        return ("A span NER model trained by `glode train-source` (paper Eq. 3): span classification on the labeled "
                "source sentences plus the masked-LM task on unlabeled target sentences (system `source-mlm`).")
    if kind == SOURCE:
        return ("A span NER model trained by `glode train-source --use-mlm false` on the labeled source sentences only: "
                "the zero-shot baseline `source-plain`.")
    return f"A span NER model trained by `glode train-target` (paper Eqs. 4-11): {target_recipe(summary)}"


def target_recipe(summary: dict) -> str:
    """How a target model learned: its epochs, auxiliary task and denoising levels."""
    options, denoise = summary.get("options") or {}, summary.get("denoise_config") or {}
    epoch, num_epochs = summary.get("epoch"), options.get("num_epochs")
    aux = {"mlm": "the masked-LM task", "supcon": "a supervised contrastive loss (language-agnostic)", "none": "no auxiliary task"}
    if options.get("denoise", True):
        levels = [name for name, key in (("global", "use_global"), ("local", "use_local")) if denoise.get(key, True)]
        directions = "multiple" if denoise.get("multiple_directions", True) else "single"
        where = f"at the {' and '.join(levels)} level{'s' if len(levels) > 1 else ''}" if levels else "with no decision level enabled"
        denoising = f"denoising {where}, {directions} update directions"
    else:
        denoising = "no denoising (the pseudo labels never change)"
    trained = f"after epoch {epoch + 1} of {num_epochs}" if isinstance(epoch, int) and num_epochs else "final epoch"
    return (f"the labeled source sentences plus pseudo labels of the target sentences, refined during training; "
            f"{aux.get(options.get('aux_task', 'mlm'), options.get('aux_task'))}; {denoising}; {trained}.")


def what_section(summary: dict) -> list[str]:
    types = entity_types(summary)
    system = system_name(summary)
    lines = ["## Model", "", model_description(summary), ""]
    lines.append(f"- system: `{system}`" if system else "- system: unknown (a target model's system is named after its variant, which was not recorded)")
    if model_kind(summary) == TARGET:
        variant, method = target_variant(summary), method_of(summary)
        trained = f"`{variant}`" if variant else "unknown (not recorded when the model was trained)"
        if method:
            trained += f", trained with method `{method}` ({METHOD_TEXT.get(method, method)})"
        lines.append(f"- variant: {trained}")
    lines.append(f"- entity types: {', '.join(types) if types else 'not recorded'}")
    if model_kind(summary) == TOKENCLS:
        lines.append(f"- labels: {', '.join(summary.get('labels') or [])}")
    else:
        lines.append(f"- classes (span labels, in order): {', '.join(summary.get('classes') or [])}")
    return lines


def sentences_cell(entry: dict) -> str:
    """The row count, and for a demo-scale sample the size of the whole file."""
    sample = entry.get("sample")
    if isinstance(sample, dict) and sample.get("of") is not None:
        return f"{entry.get('sentences')} (seeded sample of {sample['of']}, seed {sample.get('seed')})"
    return cell(entry.get("sentences"))


def data_section(data: Sequence[dict]) -> list[str]:
    lines = ["## Training data", ""]
    if not data:
        return lines + ["No training data was described when the card was written."]
    header = ("role", "dataset", "language", "split", "sentences", "labeled", "original file", "sha256", "sentences file")
    rows = [
        (entry.get("role"), entry.get("dataset"), entry.get("lang"), entry.get("split"), sentences_cell(entry),
         entry.get("labeled"), entry.get("source_path"), entry.get("sha256"), entry.get("path"))
        for entry in data
    ]
    note = "`sha256` is the checksum of the original file; `labeled: false` is unlabeled text (the target train split)."
    return lines + table(header, rows) + ["", note]


def training_section(summary: dict, version: str) -> list[str]:
    max_span_len, max_seq_len = span_limits(summary)
    lines = ["## Backbone and settings", ""]
    lines += [f"- backbone: `{backbone_of(summary) or 'not recorded'}`", f"- seed: {cell(seed_of(summary))}", f"- glode version: {version}"]
    if max_span_len is not None:
        rule = (summary.get("span_settings") or {}).get("limit_rule") or "fixed"
        lines.append(f"- max_span_len: {max_span_len} words ({rule})")
    lines += [f"- max_seq_len: {cell(max_seq_len)} subwords", "", "Training options:", ""]
    lines += table(("option", "value"), sorted((summary.get("options") or {}).items()))
    if summary.get("denoise_config"):
        lines += ["", "Denoising options:", ""] + table(("option", "value"), sorted(summary["denoise_config"].items()))
    return lines


def scores_section(summary: dict, data: Sequence[dict], scores: dict | None) -> list[str]:
    lines = ["## Test scores", ""]
    if not scores:
        entry = entry_with_role(data, "target") or entry_with_role(data, "source") or {}
        target = entry_with_role(data, "target") or {}
        dataset, lang, system = entry.get("dataset") or "<dataset>", target.get("lang") or "<lang>", system_name(summary)
        if system is None:  # a target model of unknown variant: its directory cannot be named
            where = SCORES_PATH.split("{system}")[0].format(dataset=dataset, lang=lang)
            return lines + [f"This model was not scored when it was written. The workflow's `glode evaluate` writes the test scores of each "
                            f"target variant under `{where}`, in a directory named `target-` and the variant's name; this model's variant "
                            f"was not recorded."]
        path = SCORES_PATH.format(dataset=dataset, lang=lang, system=system, seed=cell(seed_of(summary)))
        return lines + [f"This model was not scored when it was written. The workflow's `glode evaluate` writes its test scores to `{path}`."]
    seqeval = scores.get("seqeval") or {}
    gold = (scores.get("counts") or {}).get("gold_entities", seqeval.get("gold_entities"))
    lines.append("Entity-level micro scores of seqeval (default mode), x100" + (f", on `{scores['gold']}`:" if scores.get("gold") else ":"))
    lines.append("")
    return lines + table(("F1", "precision", "recall", "gold entities"),
                         [(percent(seqeval.get("f1")), percent(seqeval.get("precision")), percent(seqeval.get("recall")), gold)])


def unreachable_section(summary: dict, unreachable: dict) -> list[str]:
    """The share of gold entities that no prediction of this model can match."""
    gold = unreachable.get("gold_entities") or 0
    too_long, truncated = unreachable.get("unreachable_too_long") or 0, unreachable.get("unreachable_truncated") or 0
    max_span_len, max_seq_len = span_limits(summary)
    max_span_len, max_seq_len = unreachable.get("max_span_len") or max_span_len, unreachable.get("max_seq_len") or max_seq_len
    lines = ["## Entities out of reach", ""]
    if model_kind(summary) == TOKENCLS:  # a word tagger has no span length: only the window cuts entities off
        share = 100 * truncated / gold if gold else 0.0
        return lines + [f"{truncated} of {gold} gold entities ({share:.1f}%) are past the window of {max_seq_len} subwords (max_seq_len): the model cannot find them."]
    unreachable_total = too_long + truncated
    share = 100 * unreachable_total / gold if gold else 0.0
    return lines + [
        f"{unreachable_total} of {gold} gold entities ({share:.1f}%) are longer than {max_span_len} words (max_span_len) "
        f"or past the window of {max_seq_len} subwords (max_seq_len): the model cannot find them "
        f"({too_long} too long, {truncated} past the window)."
    ]


def usage_section(model_dir: str, lang: str | None) -> list[str]:
    """One line each for the CLI, the Python API and spaCy, naming this directory."""
    python_dir = json.dumps(model_dir, ensure_ascii=False)  # a double-quoted Python string literal
    language = json.dumps(lang or "xx", ensure_ascii=False)  # spaCy's "xx": multi-language
    return [
        "## Usage", "",
        "Command line (`glode tag`, docs/tagging.md):", "", "```bash",
        f"glode tag --model {shlex.quote(model_dir)} --input text.txt --out entities.jsonl", "```", "",
        "Python:", "", "```python",
        f'from glode import Tagger; Tagger.load({python_dir}).tag(["..."])', "```", "",
        "spaCy (after `import spacy`):", "", "```python",
        f'nlp = spacy.blank({language}); nlp.add_pipe("glode_ner", config={{"model": {python_dir}}})', "```",
    ]


def splitter_text(splitter: Any) -> str:
    """The splitter as glode.textsplit's `describe()` records it (spaCy's rules), or any other
    record as key=value pairs."""
    if isinstance(splitter, dict) and splitter.get("library") == "spacy":
        pipeline = ", ".join(splitter.get("pipeline") or []) or "tokenizer only"
        return f"spaCy {splitter.get('version')} rules for `{splitter.get('rules') or splitter.get('lang')}` (pipeline: {pipeline})"
    if isinstance(splitter, dict):
        return ", ".join(f"{key}={format_value(value)}" for key, value in sorted(splitter.items()))
    return format_value(splitter)


def ratio_text(value: float | None) -> str:
    """A ratio of the health check, or '-' where it could not be measured (e.g. fewer than 10 updates)."""
    return "-" if value is None else f"{value:.2f}x"


def behaviour_section(summary: dict) -> list[str]:
    """A target model's behaviour preset (glode.methods) and the run-health check of each epoch."""
    method = method_of(summary)
    if model_kind(summary) != TARGET or method is None:
        return []
    deviations = summary.get("method_deviations") or {}
    preset = METHOD_TEXT.get(method, method)
    lines = ["## Behaviour and run health", "", f"- method: `{method}` ({preset})"]
    lines.append("- keys changed from the preset: " + (", ".join(f"`{k}={v}`" for k, v in sorted(deviations.items())) or "none"))
    history = (summary.get("health") or {}).get("history") or []
    if history:
        warned = [h for h in history if h.get("problems")]
        verdict = ("**WARNING: this run passed a run-health limit** (the target loss or the pseudo labels' entity mass ran away "
                   "within an epoch; see docs/method.md); check it before use." if warned else "No epoch passed a run-health limit.")
        lines += ["", verdict, ""]
        lines += table(("epoch", "target-loss climb", "entity-mass growth", "model's entity predictions / initial entity spans", "problems"),
                       [(h.get("epoch"), ratio_text(h.get("loss_climb")), ratio_text(h.get("entity_mass_growth")), ratio_text(h.get("predicted_entity_ratio")),
                         "; ".join(h.get("problems") or []) or "-") for h in history])
    return lines


def limits_section(summary: dict, data: Sequence[dict]) -> list[str]:
    kind = model_kind(summary)
    dataset = (entry_with_role(data, "source") or entry_with_role(data, "target") or {}).get("dataset") or "its source dataset"
    types = ", ".join(entity_types(summary)) or "the recorded types"
    max_span_len, max_seq_len = span_limits(summary)
    if kind == TARGET:
        quality = "- Trained on pseudo labels of target-language text (machine labels, refined during training), not on gold target labels: their errors carry into the model."
    else:
        quality = "- Zero-shot: no gold labels of the target language were seen; expect cross-lingual-transfer quality, below a model trained on target-language labels."
    if kind == TOKENCLS:
        reach = f"- Words past the window of {cell(max_seq_len)} subwords are always tagged O."
    else:
        reach = f"- Spans longer than {cell(max_span_len)} words (max_span_len) are never found, nor words past the window of {cell(max_seq_len)} subwords."
    splitter = summary.get("splitter")
    if splitter:
        split = f"- Text is split into sentences and words by the splitter recorded in training: {splitter_text(splitter)}."
    else:
        split = "- No sentence or word splitter is recorded with this model: it was trained on text already split into sentences and words, and expects words split the same way."
    return ["## Limits", "", f"- Trained on {dataset} entity types only ({types}): other kinds of names are not tagged.", quality, reach, split]


# -- the card -----------------------------------------------------------------------------------


def model_card_text(summary: dict, *, data: list[dict], scores: dict | None = None, unreachable: dict | None = None,
                    version: str | None = None, model_dir: os.PathLike | str = "MODEL_DIR") -> str:
    """The README.md of a model directory: front matter, then one section per question a user
    asks. `data`: data_description of each sentences file it was trained on; `scores`: a
    metrics.json of `glode evaluate`; `unreachable`: a spans .stats.json of `glode spans`;
    `model_dir`: the path the usage lines name."""
    sections = [
        front_matter(data),
        title(summary, data),
        what_section(summary),
        data_section(data),
        training_section(summary, version or glode.__version__),
        scores_section(summary, data, scores),
    ]
    behaviour = behaviour_section(summary)
    if behaviour:
        sections.insert(4, behaviour)
    if unreachable:
        sections.append(unreachable_section(summary, unreachable))
    sections += [usage_section(str(model_dir), card_language(data)), limits_section(summary, data)]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def write_model_card(model_dir: os.PathLike | str, summary: dict, *, data: list[dict], scores: dict | None = None,
                     unreachable: dict | None = None, final_dir: os.PathLike | str | None = None) -> Path:
    """Write `model_dir/README.md`; returns its path. A stage that writes into a temporary
    directory (glode.io.atomic_dir) passes the directory's final path as `final_dir`, so that the
    usage lines name the place the model will be, not the temporary one."""
    path = Path(model_dir) / CARD_FILE
    text = model_card_text(summary, data=data, scores=scores, unreachable=unreachable, model_dir=final_dir if final_dir is not None else model_dir)
    write_text(text, path)
    return path
