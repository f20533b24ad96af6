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


def add_options(parser: argparse.ArgumentParser, cls: type, group: str | None = None) -> None:
    """Add one flag per field of dataclass `cls`, with the field's default and docstring help."""
    target = parser.add_argument_group(group or cls.__name__)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[misc]
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
    values: dict[str, Any] = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**values)


def option(default: Any, help: str) -> Any:
    """A dataclass field with a help text for its command-line flag."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})
