"""Hyper-parameters as dataclasses, exposed as command-line flags.

A stage declares its settings once, as a dataclass with the paper's values as defaults;
`add_options` turns every field into a `--field-name` flag and `options_from_args` reads them
back. Snakemake renders the config's section of the same name into those flags
(`workflow/rules/common.smk: cli_flags`), so a changed hyper-parameter changes the job's command
line and Snakemake reruns exactly that job and what follows.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_options(parser: argparse.ArgumentParser, cls: type, group: str | None = None, defaults: dict[str, Any] | None = None) -> None:
    """Add one flag per field of dataclass `cls`, with the field's default (or the one `defaults`
    names for it) and docstring help."""
    target = parser.add_argument_group(group or cls.__name__)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[misc]
        default = (defaults or {}).get(field.name, default)
        help_ = field.metadata.get("help", "") + f" (default: {default})"
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin is typing.Union and type(None) in args:  # Optional[X]
            hint = next(a for a in args if a is not type(None))
            origin = typing.get_origin(hint)
            args = typing.get_args(hint)
        if hint is bool:
            target.add_argument(_flag(field.name), type=_parse_bool, default=default, metavar="BOOL", help=help_)
        elif origin in (list, tuple):
            target.add_argument(_flag(field.name), type=args[0], nargs="*", default=default, help=help_)
        else:
            target.add_argument(_flag(field.name), type=hint, default=default, help=help_)


def options_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """The dataclass of a stage's flags, its declared ranges checked (a stage run by hand is
    checked like one that the workflow runs)."""
    values: dict[str, Any] = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    opts = cls(**values)
    check_ranges(opts)
    return opts


class OptionError(ValueError):
    """A setting outside its declared range; the message names the flag (the config key of the
    same name, with `_` for `-`, is checked by the schema before any job runs)."""


def option(default: Any, help: str, *, minimum: float | None = None, maximum: float | None = None,
           above: float | None = None, below: float | None = None, choices: tuple | None = None,
           pattern: str | None = None) -> Any:
    """A dataclass field with a help text for its command-line flag and its valid range:
    `minimum`/`maximum` inclusive, `above`/`below` exclusive bounds, `choices` for strings,
    `pattern` a regular expression the whole value must match. workflow/schemas/config.schema.yaml
    declares the same ranges for the config keys (tests/test_config.py keeps the two equal)."""
    bounds = {"minimum": minimum, "maximum": maximum, "exclusiveMinimum": above, "exclusiveMaximum": below}
    metadata = {"help": help, "bounds": {k: v for k, v in bounds.items() if v is not None}, "choices": choices, "pattern": pattern}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


_BOUND_TEXT = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}


def range_violation(value: Any, metadata: Any) -> str | None:
    """Why `value` is outside a field's declared range, or None."""
    import re

    choices, pattern = metadata.get("choices"), metadata.get("pattern")
    if choices is not None and value not in choices:
        return f"must be one of {list(choices)}"
    if pattern is not None and not re.fullmatch(pattern, str(value)):
        return f"must match {pattern}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    for bound, limit in metadata.get("bounds", {}).items():
        ok = {"minimum": value >= limit, "maximum": value <= limit, "exclusiveMinimum": value > limit, "exclusiveMaximum": value < limit}[bound]
        if not ok:
            return f"must be {_BOUND_TEXT[bound]} {limit}"
    return None


def check_ranges(opts: Any) -> None:
    """Raise OptionError for the first field of dataclass `opts` outside its declared range."""
    for field in dataclasses.fields(opts):
        value = getattr(opts, field.name)
        problem = range_violation(value, field.metadata)
        if problem:
            raise OptionError(f"{_flag(field.name)} {value!r}: {problem}")


def field_schema(cls: type) -> dict[str, dict]:
    """The JSON-schema property of every field of `cls`: its type and declared range."""
    hints = typing.get_type_hints(cls)
    types = {bool: "boolean", int: "integer", float: "number", str: "string"}
    schema = {}
    for field in dataclasses.fields(cls):
        prop: dict[str, Any] = {"type": types[hints[field.name]]} if hints[field.name] in types else {}
        prop.update(field.metadata.get("bounds", {}))
        if field.metadata.get("choices") is not None:
            prop["enum"] = list(field.metadata["choices"])
        if field.metadata.get("pattern") is not None:
            prop["pattern"] = field.metadata["pattern"]
        schema[field.name] = prop
    return schema
