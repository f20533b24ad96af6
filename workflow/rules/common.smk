# Helpers shared by the rules: config lookups and the lists of files each target needs.
import json
import shlex
from pathlib import Path

from glode.methods import DEFAULT_METHOD, method_keys

# The metrics file of one evaluation: the output pattern of rule `evaluate`, and (through
# `metrics_file`) every list of metrics files that a target or a table asks for.
METRICS_PATTERN = "results/eval/{dataset}/{lang}/{system}/seed{seed}/metrics.json"
SOURCE_SYSTEMS = ("source-plain", "source-mlm")


def is_offline_backbone():
    return Path(config["backbone"]) == Path(config["offline_backbone"])


def backbone_inputs():
    """The backbone directory as a rule input when this workflow builds it, else nothing."""
    return [config["offline_backbone"]] if is_offline_backbone() else []


def tokenizer_source(wildcards, input):
    """The backbone directory when built here, else the configured model id."""
    return input.backbone if input.backbone else config["backbone"]


def entity_types(dataset):
    return " ".join(config["datasets"][dataset]["entity_types"])


def role(dataset, lang):
    return "source" if lang == config["datasets"][dataset]["source"] else "target"


def languages(dataset):
    spec = config["datasets"][dataset]
    return [spec["source"], *spec["targets"]]


def sentences_file(dataset, lang, split):
    return f"results/data/{dataset}/{lang}/{split}.parquet"


def spans_file(dataset, lang, split):
    return f"results/spans/{dataset}/{lang}/{split}.parquet"


def prediction_file(dataset, lang, system, seed, split):
    return f"results/predictions/{dataset}/{lang}/{system}/seed{seed}/{split}.parquet"


def metrics_file(dataset, lang, system, seed):
    return METRICS_PATTERN.format(dataset=dataset, lang=lang, system=system, seed=seed)


def per_language_files(path, splits):
    """`path(dataset, lang, split)` for every language of every dataset and the given splits."""
    return [
        path(dataset, lang, split)
        for dataset in config["datasets"]
        for lang in languages(dataset)
        for split in splits
    ]


def all_sentence_files():
    """Every language's train, dev and test sentences: the splits it needs (train; a target's
    test), and the others where they exist (dev: no model selection uses it; it is checked).
    """
    return [
        sentences_file(d, lang, split)
        for d in config["datasets"]
        for lang in languages(d)
        for split in ("train", "dev", "test")
        if split in needed_splits(config, d, lang)
        or data_split_available(config, d, lang, split, MANIFEST_KEYS)
    ]


def data_file_input(wildcards):
    """A declared file of one's own as the prepare job's input (so a change reruns it)."""
    declared = declared_file(
        config, wildcards.dataset, wildcards.lang, wildcards.get("split", "train")
    )
    return {"data_file": declared["path"]} if declared else {}


def tokenisation_flag(wildcards):
    """`joined` where a language's words are characters (datasets.<d>.tokenisation)."""
    spec = config["datasets"][wildcards.dataset].get("tokenisation", {})
    mode = spec.get(wildcards.lang, "words")
    return f"--tokenisation {mode}" if mode != "words" else ""


def data_source_flags(wildcards):
    """Where `glode prepare` reads a file: a declared one (--file) or the manifest's."""
    split = wildcards.get("split", "train")
    declared = declared_file(config, wildcards.dataset, wildcards.lang, split)
    if declared is None:
        return f"--data-root {config['data_root']} {download_flags()}".strip()
    fmt = config["datasets"][wildcards.dataset].get("format", {})
    flags = f"--file {shlex.quote(declared['path'])} --scheme {fmt.get('scheme', 'BIO')} --encoding {shlex.quote(fmt.get('encoding', 'UTF-8'))}"
    return flags + (f" --sha256 {declared['sha256']}" if declared["sha256"] else "")


def all_span_files():
    """Spans of the splits that models train on (every language's train split) or are scored on
    (the targets' test splits); dev is unused (no model selection), and no table scores the
    source language's test split."""
    train = per_language_files(spans_file, ("train",))
    return train + [spans_file(d, lang, "test") for d, lang in scored_target_pairs()]


def sample_flags():
    return f"--max-sentences {config['max_train_sentences']} --sample-seed {config['sample_seed']}"


def download_flags():
    if not config.get("download", False):
        return ""
    return f"--download --download-dir {config['download_dir']}"


def cli_flags(settings):
    """Render a config section as `--key value` flags for a stage's CLI (lists as several values)."""
    parts = []
    for key, value in settings.items():
        flag = f"--{key.replace('_', '-')}"
        if isinstance(value, bool):
            parts.append(f"{flag} {str(value).lower()}")
        elif isinstance(value, (list, tuple)):
            parts.append(f"{flag} {' '.join(str(v) for v in value)}")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def source_lang(dataset):
    return config["datasets"][dataset]["source"]


def source_kind_target(kind):
    """`plain` trains on source data only; `mlm-de` adds the MLM task on German target text."""
    return None if kind == "plain" else kind.removeprefix("mlm-")


def span_settings(dataset):
    """`spans`, with the dataset's own `datasets.<d>.spans` over it."""
    return {**config["spans"], **config["datasets"][dataset].get("spans", {})}


def span_limit_is_auto(dataset):
    return span_settings(dataset)["max_span_len"] == "auto"


def span_limit_file(dataset):
    """Where `glode span-limit` writes a dataset's chosen max_span_len (when `auto`)."""
    return f"results/spans/{dataset}/span_limit.json"


def span_limit_input(wildcards):
    """The dataset's span-limit file as an input of its spans jobs, when the limit is `auto`."""
    auto = span_limit_is_auto(wildcards.dataset)
    return {"span_limit": span_limit_file(wildcards.dataset)} if auto else {}


def span_flags(wildcards, input):
    """`glode spans` flags of the dataset: a fixed limit, or `auto` read from its file."""
    settings = span_settings(wildcards.dataset)
    flags = f"--max-span-len {settings['max_span_len']} --max-seq-len {settings['max_seq_len']}"
    if span_limit_is_auto(wildcards.dataset):
        flags += f" --span-limit {input.span_limit}"
    return flags


def span_limit_inputs(wildcards):
    """What `auto` reads: the labeled source train split and every target's unlabeled one."""
    dataset = wildcards.dataset
    targets = config["datasets"][dataset]["targets"]
    return {
        "source": sentences_file(dataset, source_lang(dataset), "train"),
        "targets": [sentences_file(dataset, lang, "train") for lang in targets],
    }


def span_limit_flags(wildcards):
    settings = span_settings(wildcards.dataset)
    targets = config["datasets"][wildcards.dataset]["targets"]
    pairs = " ".join(
        f"{lang}={sentences_file(wildcards.dataset, lang, 'train')}" for lang in targets
    )
    return (
        f"--targets {pairs} --coverage {settings['coverage']} "
        f"--cap {settings['max_span_len_cap']}"
    )


def span_limit_plan_lines():
    """What planning says about each `auto` dataset: its limit once chosen, or how it will be."""
    lines = []
    for dataset in config["datasets"]:
        if not span_limit_is_auto(dataset):
            continue
        settings = span_settings(dataset)
        path = Path(span_limit_file(dataset))
        chosen = json.loads(path.read_text())["max_span_len"] if path.exists() else None
        how = (
            f"{chosen} (from {path})"
            if chosen
            else f"chosen by the span_limit job ({path})"
        )
        lines.append(
            f"spans of {dataset}: max_span_len auto = {how}: {settings['coverage']:.0%} of the "
            f"source train entities, carried to each target through the backbone's pieces, "
            f"capped at {settings['max_span_len_cap']}"
        )
    return lines


def source_train_data(dataset):
    """The labeled source-language train split (sentences and spans) that every training reads."""
    src = source_lang(dataset)
    return {
        "source_sentences": sentences_file(dataset, src, "train"),
        "source_spans": spans_file(dataset, src, "train"),
    }


def training_run_settings(settings, mlm_lang, seed):
    """Add what both training stages set per run: the MLM language's weight override, the seed."""
    if mlm_lang in config.get("mlm_weight_by_lang", {}):
        settings["mlm_weight"] = config["mlm_weight_by_lang"][mlm_lang]
    settings["seed"] = int(seed)
    return settings


def mlm_vocabulary_input(dataset, lang):
    """The MLM corpus vocabulary of a target language as a named input, where configured."""
    if config.get("mlm_vocabulary", "full") != "corpus":
        return {}
    return {"mlm_vocab": f"results/vocab/{dataset}/{lang}.json"}


def mlm_vocabulary_flag(wildcards, input):
    return f"--mlm-vocab {input.mlm_vocab}" if "mlm_vocab" in input.keys() else ""


def frozen_states_file(dataset, lang, settings):
    """The frozen-layer cache of a language's train split for a training section's settings, or None."""
    if not settings.get("cache_frozen_layers", False):
        return None
    layers, top = settings.get("encoder_layers", 0), settings.get("train_top_layers", 0)
    return f"results/frozen/{dataset}/{lang}/train.layers{layers}.top{top}.safetensors"


def frozen_states_inputs(dataset, langs, settings):
    """{input name: cache file} for the languages {input name: lang} a job trains on, where cached."""
    files = {
        name: frozen_states_file(dataset, lang, settings)
        for name, lang in langs.items()
    }
    return {name: path for name, path in files.items() if path}


def frozen_states_flags(wildcards, input):
    names = ("frozen_states", "source_frozen_states", "target_frozen_states")
    return " ".join(
        f"--{name.replace('_', '-')} {input[name]}"
        for name in names
        if name in input.keys()
    )


def source_training_inputs(wildcards):
    dataset = wildcards.dataset
    inputs = {**source_train_data(dataset), "backbone": backbone_inputs()}
    src = {"frozen_states": source_lang(dataset)}
    inputs.update(frozen_states_inputs(dataset, src, config["source"]))
    target = source_kind_target(wildcards.kind)
    if target:
        inputs["target_sentences"] = sentences_file(dataset, target, "train")
        inputs.update(mlm_vocabulary_input(dataset, target))
    return inputs


def source_training_flags(wildcards):
    settings = dict(config["source"])
    target = source_kind_target(wildcards.kind)
    settings["use_mlm"] = target is not None
    return cli_flags(training_run_settings(settings, target, wildcards.seed))


# train-source settings that the token classifier does not take: it never sees target text, and
# it runs every encoder layer (no frozen-layer cache; the span model's cache turns off the
# frozen layers' dropout, so the two would differ anyway).
TOKENCLS_DROPPED_SETTINGS = ("max_target_sentences", "use_mlm", "cache_frozen_layers")


def tokencls_training_flags(wildcards):
    """`source-plain`'s settings (the `source` section, the seed), for `glode train-tokencls`."""
    settings = {
        k: v for k, v in config["source"].items() if k not in TOKENCLS_DROPPED_SETTINGS
    }
    settings["use_mlm"] = False
    settings["seed"] = int(wildcards.seed)
    return cli_flags(settings)


def tokencls_prediction_flags():
    """Batch, device and precision of the span models' predictions (`pseudo_labels`)."""
    settings = config["pseudo_labels"]
    keys = ("batch_size", "device", "precision")
    return cli_flags({k: settings[k] for k in keys if k in settings})


def target_sentences_flag(wildcards, input):
    return (
        f"--target-sentences {input.target_sentences}"
        if "target_sentences" in input.keys()
        else ""
    )


def source_model(dataset, lang, system, seed):
    """The model behind a source system for a target language: `plain`, or `mlm-<lang>`."""
    kind = "plain" if system == "source-plain" else f"mlm-{lang}"
    return f"results/source/{dataset}/{kind}/seed{seed}/model"


def system_model(wildcards):
    """The model directory behind a system name of the results tree."""
    d, lang, seed = wildcards.dataset, wildcards.lang, wildcards.seed
    if wildcards.system in SOURCE_SYSTEMS:
        return source_model(d, lang, wildcards.system, seed)
    variant = wildcards.system.removeprefix("target-")
    return f"results/target/{d}/{lang}/{variant}/seed{seed}/model"


def prediction_flags(wildcards):
    settings = dict(config["pseudo_labels"])
    # Pruning is a property of the *initial* pseudo labels only, never of test predictions.
    settings["pruned"] = settings.get("pruned", False) and wildcards.split == "train"
    return cli_flags(settings)


def target_pairs():
    return [
        (d, lang) for d, spec in config["datasets"].items() for lang in spec["targets"]
    ]


def has_test(dataset, lang):
    return data_split_available(config, dataset, lang, "test", MANIFEST_KEYS)


def scored_target_pairs():
    """The targets with a test file: the ones evaluated, tabled and studied. A declared target
    without one (a language of one's own) gets its models, and nothing that needs a score.
    """
    return [(d, lang) for d, lang in target_pairs() if has_test(d, lang)]


def gold_target_pairs():
    """The targets whose train split keeps hidden gold tags (not raw text): pseudo-label quality."""
    return [(d, lang) for d, lang in target_pairs() if not is_raw_text(config, d, lang)]


def unscored_targets_message():
    """The one line that planning prints for targets without a test file (None if all have one)."""
    unscored = [f"{d}/{lang}" for d, lang in target_pairs() if not has_test(d, lang)]
    if not unscored:
        return None
    return (
        f"glode: {', '.join(unscored)} ha{'s' if len(unscored) == 1 else 've'} no test file: "
        "the models are trained, and evaluation, label quality and table cells are skipped there"
    )


def source_runs(pairs=None):
    """(dataset, lang, system, seed) of every source model applied to a target language."""
    return [
        (d, lang, system, seed)
        for d, lang in (target_pairs() if pairs is None else pairs)
        for system in SOURCE_SYSTEMS
        for seed in config["seeds"]
    ]


def source_evaluation_files():
    """The source models' test metrics on the target languages (also Figure 4's input)."""
    return [metrics_file(*run) for run in source_runs(scored_target_pairs())]


def model_files():
    """Every model a target language gets: the source models (plain, mlm-<lang>) and the target
    models of the configured variants: a language's tagger, with or without a test (the `models` target).
    """
    files = {
        source_model(d, lang, system, seed) for d, lang, system, seed in source_runs()
    }
    files |= {
        f"results/target/{d}/{lang}/{variant}/seed{seed}/model"
        for d, lang in target_pairs()
        for variant in config["variants"]
        for seed in config["seeds"]
    }
    return sorted(files)


def target_langs_regex(raw_text):
    """Target languages whose train split is raw text (rule prepare_raw_target) or, with
    raw_text False, a tagged file (rule prepare_unlabeled_target); "(?!)" matches nothing.
    """
    langs = {
        lang for d, lang in target_pairs() if is_raw_text(config, d, lang) == raw_text
    }
    return "|".join(sorted(langs)) or "(?!)"


def raw_text_flags(wildcards):
    declared = declared_file(config, wildcards.dataset, wildcards.lang, "train")
    flags = f"--file {shlex.quote(declared['path'])} --format {declared['format']}"
    if declared["format"] == "jsonl":
        flags += f" --text-key {shlex.quote(declared['text_key'])}"
    return flags + (f" --sha256 {declared['sha256']}" if declared["sha256"] else "")


def initial_pseudo_label_files():
    """The source models' class distributions over the target train spans (initial pseudo labels)."""
    return [prediction_file(*run, "train") for run in source_runs()]


def variant_method(variant):
    """A variant's behaviour preset (glode.methods): its own `method`, else the config's."""
    return config["variants"][variant].get(
        "method", config.get("method", DEFAULT_METHOD)
    )


def variant_settings(variant):
    """(train-target settings, denoiser settings, initial-label system) of a variant: its
    method's preset, under the config's sections, under the variant's own overlay."""
    overlay = config["variants"][variant]
    method = variant_method(variant)
    preset = method_keys(method)
    target = {
        **preset["target"],
        **config["target"],
        **overlay.get("target", {}),
        "method": method,
    }
    denoise = {**preset["denoise"], **config["denoise"], **overlay.get("denoise", {})}
    return target, denoise, overlay.get("initial_labels", "source-mlm")


def target_epochs(lang):
    return config.get("target_epochs_by_lang", {}).get(lang, config["target"]["epochs"])


def target_run_dir(wildcards):
    w = wildcards
    return f"results/target/{w.dataset}/{w.lang}/{w.variant}/seed{w.seed}"


def target_epoch_inputs(wildcards):
    """Epoch e starts from epoch e-1's state and refined labels; epoch 0 from the initial labels."""
    return target_training_inputs(wildcards, int(wildcards.epoch))


def target_run_inputs(wildcards):
    """A whole run in one job (`target_jobs: run`): epoch 0's inputs, and the test split."""
    d, lang = wildcards.dataset, wildcards.lang
    return {
        **target_training_inputs(wildcards, 0),
        "test_sentences": sentences_file(d, lang, "test"),
        "test_spans": spans_file(d, lang, "test"),
    }


def target_run_epoch_groups():
    """{number of epochs: its target languages}: one run rule per epoch count."""
    groups = {}
    for _, lang in target_pairs():
        groups.setdefault(target_epochs(lang), set()).add(lang)
    return {n: sorted(langs) for n, langs in sorted(groups.items())}


def run_prediction_flags():
    settings = config["pseudo_labels"]
    return (
        f"--predict-batch-size {settings.get('batch_size', 64)} "
        f"--predict-precision {settings.get('precision', 'auto')}"
    )


def predicted_systems_regex():
    """The systems whose test predictions the `predict` jobs make (with `target_jobs: run` a
    target run's job predicts its own test split)."""
    if config.get("target_jobs", "epoch") == "run":
        return "source-plain|source-mlm"
    return "source-plain|source-mlm|target-[A-Za-z0-9_]+"


def target_training_inputs(wildcards, epoch):
    d, lang, seed = wildcards.dataset, wildcards.lang, wildcards.seed
    inputs = {
        **source_train_data(d),
        "target_sentences": sentences_file(d, lang, "train"),
        "target_spans": spans_file(d, lang, "train"),
        "backbone": backbone_inputs(),
    }
    target = variant_settings(wildcards.variant)[0]
    if target.get("aux_task", "mlm") == "mlm":
        inputs.update(mlm_vocabulary_input(d, lang))
    langs = {"source_frozen_states": source_lang(d), "target_frozen_states": lang}
    inputs.update(frozen_states_inputs(d, langs, target))
    if epoch == 0:
        initial = variant_settings(wildcards.variant)[2]
        inputs["labels"] = prediction_file(d, lang, initial, seed, "train")
        if config.get("target_init", "backbone") == "source":
            inputs["init_model"] = source_model(d, lang, initial, seed)
    else:
        previous = f"{target_run_dir(wildcards)}/epoch{epoch - 1}"
        inputs["labels"] = f"{previous}/labels.parquet"
        inputs["state"] = f"{previous}/state"
    return inputs


def state_in_flag(wildcards, input):
    """Where an epoch starts: epoch e-1's state, or (epoch 0, `target_init: source`) a source model."""
    if "state" in input.keys():
        return f"--state-in {input.state}"
    if "init_model" in input.keys():
        return f"--init-model {input.init_model}"
    return ""


def target_training_flags(wildcards):
    target, denoise, _ = variant_settings(wildcards.variant)
    settings = {k: v for k, v in target.items() if k != "epochs"}
    settings["num_epochs"] = target_epochs(wildcards.lang)
    training_run_settings(settings, wildcards.lang, wildcards.seed)
    settings.update(denoise)
    return cli_flags(settings)


def last_epoch_state(wildcards):
    return f"{target_run_dir(wildcards)}/epoch{target_epochs(wildcards.lang) - 1}/state"


def label_quality_files(variants, seeds=None):
    """Pseudo-label F1 per epoch (Figure 3), plus the initial labels' F1 as epoch -1."""
    files = []
    for d, lang in gold_target_pairs():
        for seed in config["seeds"] if seeds is None else seeds:
            for variant in variants:
                initial = variant_settings(variant)[2]
                files.append(
                    f"results/analysis/label_quality/{d}/{lang}/{initial}/seed{seed}/initial.json"
                )
                files += [
                    f"results/analysis/label_quality/{d}/{lang}/{variant}/seed{seed}/epoch{e}.json"
                    for e in range(target_epochs(lang))
                ]
    return sorted(set(files))


def target_evaluation_files(variants):
    return [
        metrics_file(d, lang, f"target-{variant}", seed)
        for d, lang in scored_target_pairs()
        for variant in variants
        for seed in config["seeds"]
    ]


TABLE_SYSTEMS = {
    1: ["source-tokencls", "source-plain", "source-mlm", "target-glode"],
    2: ["source-tokencls", "source-plain", "source-mlm", "target-glode"],
    3: None,  # every variant except Table 4's language-agnostic one
    4: ["target-glode", "target-agnostic"],
}
TABLE_DATASETS = {1: ["conll"], 2: ["wikiann"], 3: None, 4: None}


def table_metrics(wildcards):
    """metrics.json files behind one of the paper's tables, for the configured targets and seeds."""
    table = int(wildcards.table)
    systems = TABLE_SYSTEMS[table] or [
        f"target-{v}" for v in config["variants"] if v != "agnostic"
    ]
    datasets = TABLE_DATASETS[table] or list(config["datasets"])
    return [
        metrics_file(d, lang, system, seed)
        for d, lang in scored_target_pairs()
        if d in datasets
        for system in systems
        if system.removeprefix("target-") in config["variants"]
        or not system.startswith("target-")
        for seed in config["seeds"]
    ]


def scale_text():
    train = config["max_train_sentences"] or "all"
    layers = config["source"].get("encoder_layers", 0)
    depth = f"; encoder: the backbone's bottom {layers} layers" if layers else ""
    text = (
        f"train sentences per language: {train}; source epochs {config['source']['epochs']}, "
        f"target epochs {config['target']['epochs']}; seeds {len(config['seeds'])}{depth}"
    )
    if (
        len(config["seeds"]) == 1
    ):  # no spread to judge a difference by: say so in every table
        text += (
            ". One seed: differences between systems and variants at this scale are noise, "
            "not effects (docs/study: the study scale, 3 seeds, with significance tests)"
        )
    return text


def figure3_quality_files():
    variants = [
        v
        for v in ("glode", "wo_denoising_local", "wo_denoising_global")
        if v in config["variants"]
    ]
    return label_quality_files(variants)


def figure4_sentences(which):
    if which == "source":
        return sorted(
            {
                sentences_file(d, source_lang(d), "train")
                for d, _ in scored_target_pairs()
            }
        )
    return [sentences_file(d, lang, "test") for d, lang in scored_target_pairs()]


def table_files():
    return [
        f"results/tables/table{n}.{ext}" for n in (1, 2, 3, 4) for ext in ("csv", "md")
    ]


def figure_files():
    return ["results/figures/figure3.png", "results/figures/figure4.png"]


# The project's committed study (beside the Snakefile, whatever the working directory).
COMMITTED_STUDY = Path(workflow.basedir) / "docs" / "study"


def committed_study_files():
    """The committed study in the report, where the checkout has one (docs/study)."""
    if not (COMMITTED_STUDY / "scores.csv").exists():
        return []
    names = ("study_scores.csv", "study_significance.csv", "study_figure3.png")
    return [f"results/committed_study/{name}" for name in names]


def study_variants():
    missing = [v for v in config["study_variants"] if v not in config["variants"]]
    if missing:
        raise ValueError(
            f"config key 'study_variants': {missing} are not under `variants` of this config"
        )
    return config["study_variants"]


# The study's systems, and its paired significance tests (A=B: F1 of A minus F1 of B).
STUDY_SOURCE_SYSTEMS = ("source-tokencls", *SOURCE_SYSTEMS)
STUDY_COMPARISONS = (
    "target-glode=target-wo_denoising",
    "target-glode=source-tokencls",
    "target-glode_authors=target-wo_denoising_authors",
    "target-glode_authors=target-glode",
)


def study_target_pairs(wildcards):
    """The targets of one study job: one (dataset, lang) where the job names it, else all."""
    if "lang" in wildcards.keys():
        return [(wildcards.dataset, wildcards.lang)]
    return scored_target_pairs()


def study_metrics_files(wildcards):
    """One seed's scores of the study's systems on the job's targets."""
    systems = [*STUDY_SOURCE_SYSTEMS, *(f"target-{v}" for v in study_variants())]
    return [
        metrics_file(d, lang, system, wildcards.seed)
        for d, lang in study_target_pairs(wildcards)
        for system in systems
    ]


def study_prediction_files(wildcards):
    """The word-level predictions beside those scores: the significance tests read them."""
    return [
        str(Path(path).with_name("predictions.conll"))
        for path in study_metrics_files(wildcards)
    ]


def study_quality_files(wildcards):
    pairs = set(study_target_pairs(wildcards))
    return [
        path
        for path in label_quality_files(study_variants(), seeds=[wildcards.seed])
        if tuple(Path(path).parts[3:5]) in pairs
    ]


def study_initial_flags(wildcards):
    """`variant=system` pairs: whose initial labels are each study variant's epoch 0."""
    return " ".join(f"{v}={variant_settings(v)[2]}" for v in study_variants())


def study_comparison_flags(wildcards):
    """The comparisons whose systems are both among the study's."""
    systems = {*STUDY_SOURCE_SYSTEMS, *(f"target-{v}" for v in study_variants())}
    pairs = [c for c in STUDY_COMPARISONS if set(c.split("=")) <= systems]
    return " ".join(pairs)
