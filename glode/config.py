"""The workflow configuration, loaded and validated outside Snakemake (for tests and scripts).

Snakemake itself loads `config/config.yaml` and validates it against the same JSON schema; this
module does the same so that tests can build the real config, shrink it, and hand it to
Snakemake as an overlay.
"""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_PATH = PROJECT_ROOT / "config" / "config.yaml"
SCHEMA_PATH = PROJECT_ROOT / "workflow" / "schemas" / "config.schema.yaml"


def deep_merge(base: dict, overlay: dict) -> dict:
    """`overlay` on top of `base`, recursively for nested dicts (Snakemake's --configfile rule)."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# The paper's Table 3 ablations and Table 4's language-agnostic variant (config/config.yaml).
PAPER_VARIANTS = ("glode", "wo_mlm", "wo_denoising", "wo_denoising_local", "wo_denoising_global", "wo_multiple_directions", "wo_mlm_init", "agnostic")
# GLoDe and its w/o-denoising ablation under the other behaviour presets (glode.methods), side by side.
METHOD_VARIANTS = ("glode_authors", "wo_denoising_authors", "glode_paper", "wo_denoising_paper")


class ConfigError(ValueError):
    """A configuration mistake, named by its key path (e.g. `target.lr`), found before any job runs."""


def key_path(parts) -> str:
    return ".".join(str(p) for p in parts) or "(top level)"


def did_you_mean(name: str, known) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def schema_error_message(error) -> str:
    """A jsonschema error as `config key 'a.b': ...`; an unknown key gets a did-you-mean."""
    where = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        unknown = [k for k in error.instance if k not in known]
        if unknown:
            key = unknown[0]
            return f"config key {key_path([*where, key])!r} is not a known setting{did_you_mean(key, known)}"
    return f"config key {key_path(where)!r}: {error.message}"


def check_variant_names(config: dict) -> None:
    """A variant (or study variant) outside the paper's list must be declared in custom_variants,
    so that a misspelled `glod` is an error, not a new variant."""
    declared = set(PAPER_VARIANTS) | set(METHOD_VARIANTS) | set(config.get("custom_variants", []))
    for name in config.get("variants", {}):
        if name not in declared:
            raise ConfigError(f"config key 'variants.{name}': not one of the paper's variants{did_you_mean(name, PAPER_VARIANTS)}; "
                              f"declare a variant of your own in custom_variants: [{name}]")
    for name in config.get("study_variants", []):
        if name not in declared:
            raise ConfigError(f"config key 'study_variants': {name!r} is not a variant name{did_you_mean(name, declared)}")


SPLITS = ("train", "dev", "test")


RAW_TEXT_FORMATS = ("text", "jsonl")  # glode.textsplit.RAW_FORMATS (not imported: planning stays light)


def declared_file(config: dict, dataset: str, lang: str, split: str) -> dict | None:
    """{path, sha256, format, text_key} of a file declared under datasets.<dataset>.files, or None."""
    entry = config["datasets"][dataset].get("files", {}).get(lang, {}).get(split)
    if entry is None:
        return None
    if isinstance(entry, str):
        entry = {"path": entry}
    return {"path": entry["path"], "sha256": entry.get("sha256"), "format": entry.get("format", "conll"), "text_key": entry.get("text_key", "text")}


def is_raw_text(config: dict, dataset: str, lang: str) -> bool:
    """Whether a language's train split is declared as raw text (no tags, so no hidden gold)."""
    declared = declared_file(config, dataset, lang, "train")
    return declared is not None and declared["format"] in RAW_TEXT_FORMATS


def needed_splits(config: dict, dataset: str, lang: str) -> tuple[str, ...]:
    """The splits a language must have: every language trains; a benchmark target is also scored.
    A target declared under `files` (a language of one's own) needs only its train split: without
    a test file its models are trained and not scored."""
    spec = config["datasets"][dataset]
    declared = lang in spec.get("files", {})
    return ("train", "test") if lang in spec["targets"] and not declared else ("train",)


def check_file_formats(config: dict) -> None:
    """Raw text is unlabeled: only a target's train split may be declared so; every other split
    is tagged CoNLL. `text_key` only goes with jsonl."""
    for dataset, spec in config["datasets"].items():
        for lang, splits in spec.get("files", {}).items():
            for split in splits:
                declared = declared_file(config, dataset, lang, split)
                key = f"datasets.{dataset}.files.{lang}.{split}"
                raw = declared["format"] in RAW_TEXT_FORMATS
                if raw and (split != "train" or lang not in spec["targets"]):
                    raise ConfigError(f"config key '{key}.format': {declared['format']} (raw text, no tags) is only for a target language's train split; "
                                      f"the {'source language' if lang == spec['source'] else split + ' split'} must be tagged (format: conll)")
                entry = spec["files"][lang][split]
                if isinstance(entry, dict) and "text_key" in entry and declared["format"] != "jsonl":
                    raise ConfigError(f"config key '{key}.text_key': only for format: jsonl (this file is {declared['format']})")


def manifest_keys(config: dict) -> set[tuple[str, str, str]] | None:
    """(dataset, lang, split) of every file in data_root's MANIFEST.tsv, or None without one."""
    from glode.manifest import read_manifest

    path = Path(config["data_root"]) / "MANIFEST.tsv"
    return {e.key for e in read_manifest(path)} if path.is_file() else None


def data_split_available(config: dict, dataset: str, lang: str, split: str, in_manifest: set | None) -> bool:
    return declared_file(config, dataset, lang, split) is not None or in_manifest is None or (dataset, lang, split) in in_manifest


def check_language_keys(config: dict) -> None:
    """`files` and `tokenisation` name languages of their dataset (a typo is not ignored)."""
    for dataset, spec in config["datasets"].items():
        langs = [spec["source"], *spec["targets"]]
        for section in ("files", "tokenisation"):
            for lang in spec.get(section, {}):
                if lang not in langs:
                    raise ConfigError(f"config key 'datasets.{dataset}.{section}.{lang}': {lang!r} is neither the source nor a target of "
                                      f"{dataset} ({', '.join(langs)}){did_you_mean(lang, langs)}")


def check_data_files(config: dict, in_manifest: set | None) -> None:
    """Every declared file exists, and every split a language needs is declared or in the
    manifest, checked when the workflow is planned (not when its first job fails)."""
    for dataset, spec in config["datasets"].items():
        for lang, splits in spec.get("files", {}).items():
            for split in splits:
                path = Path(declared_file(config, dataset, lang, split)["path"])
                if not path.is_file() or not os.access(path, os.R_OK):
                    raise ConfigError(f"config key 'datasets.{dataset}.files.{lang}.{split}': {path} is not a readable file")
        for lang in [spec["source"], *spec["targets"]]:
            missing = [s for s in needed_splits(config, dataset, lang) if not data_split_available(config, dataset, lang, s, in_manifest)]
            if missing:
                raise ConfigError(
                    f"config key 'datasets.{dataset}': {dataset}/{lang} has no {'/'.join(missing)} file: it is not in "
                    f"{Path(config['data_root']) / 'MANIFEST.tsv'}; declare your files as datasets.{dataset}.files.{lang}.<split>: PATH "
                    "(docs/new-language.md)")


def check_config(config: dict) -> None:
    """Validate against workflow/schemas/config.schema.yaml and check the variant names; raise
    ConfigError naming the offending key (the Snakefile calls this before planning any job)."""
    import jsonschema

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise ConfigError(schema_error_message(error))
    check_variant_names(config)
    check_language_keys(config)
    check_file_formats(config)


def load_config(*overlays: str | Path | dict, base: str | Path = CONFIG_PATH) -> dict[str, Any]:
    """config/config.yaml with overlays (files or dicts) merged on top, validated."""
    config = yaml.safe_load(Path(base).read_text())
    for overlay in overlays:
        extra = overlay if isinstance(overlay, dict) else yaml.safe_load(Path(overlay).read_text())
        config = deep_merge(config, extra or {})
    check_config(config)
    return config
