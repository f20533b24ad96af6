"""The workflow configuration, loaded and validated outside Snakemake (for tests and scripts).

Snakemake itself loads `config/config.yaml` and validates it against the same JSON schema; this
module does the same so that tests can build the real config, shrink it, and hand it to
Snakemake as an overlay.
"""

from __future__ import annotations

import copy
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


def validate_config(config: dict) -> None:
    import jsonschema

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    jsonschema.validate(config, schema)


def load_config(*overlays: str | Path | dict, base: str | Path = CONFIG_PATH) -> dict[str, Any]:
    """config/config.yaml with overlays (files or dicts) merged on top, validated."""
    config = yaml.safe_load(Path(base).read_text())
    for overlay in overlays:
        extra = overlay if isinstance(overlay, dict) else yaml.safe_load(Path(overlay).read_text())
        config = deep_merge(config, extra or {})
    validate_config(config)
    return config
