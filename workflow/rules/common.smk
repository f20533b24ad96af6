# Helpers shared by the rules: config lookups and the lists of files each target needs.
from pathlib import Path


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


def target_languages_regex():
    langs = {lang for spec in config["datasets"].values() for lang in spec["targets"]}
    return "|".join(sorted(langs)) or "(?!)"


def all_sentence_files():
    return [
        f"results/data/{dataset}/{lang}/{split}.parquet"
        for dataset in config["datasets"]
        for lang in languages(dataset)
        for split in ("train", "dev", "test")
    ]


def all_span_files():
    return [
        f"results/spans/{dataset}/{lang}/{split}.parquet"
        for dataset in config["datasets"]
        for lang in languages(dataset)
        for split in ("train", "dev", "test")
    ]


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
