"""Atomic output writing and small I/O helpers shared by every stage.

Every stage writes its outputs through these functions, so an interrupted run never leaves a
half-written file that a later run (or Snakemake) could mistake for a finished one: data goes to
a temporary file in the same directory and is renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

# pandas and pyarrow are imported where Parquet is read or written, not here: the Snakefile's
# config and backbone checks import this module at every parse, and need neither (~0.5 s).

log = logging.getLogger("glode")

# What every training stage writes beside its weights: options, inputs, data sizes (read back by
# glode.tagger, glode.model_card and the next stage).
TRAINING_SUMMARY_FILE = "glode_training.json"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish_mode(path: Path, directory: bool) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries; give outputs the usual umask mode."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


class GlodeInputError(ValueError):
    """Bad input data: the message names the file (and line, where there is one)."""

    def __init__(self, path: os.PathLike | str, message: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _publish_mode(tmp_path, directory=False)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary directory next to `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp_path
        _publish_mode(tmp_path, directory=True)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            shutil.rmtree(tmp_path)


def write_parquet(df: pd.DataFrame | pa.Table, path: os.PathLike | str, metadata: dict[str, Any] | None = None) -> None:
    """Write a DataFrame or Arrow table atomically; `metadata` is stored as JSON in the schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    # pandas' own schema metadata names extension dtypes (e.g. "list<item: int8>[pyarrow]") that
    # other pandas versions cannot parse back; the Arrow types alone read everywhere.
    merged = {k: v for k, v in (table.schema.metadata or {}).items() if k != b"pandas"}
    if metadata:
        merged[b"glode"] = json.dumps(metadata, sort_keys=True).encode()
    table = table.replace_schema_metadata(merged)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_parquet_metadata(path: os.PathLike | str) -> dict[str, Any]:
    """The JSON metadata that `write_parquet` stored, or {}."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"glode")
    return json.loads(raw) if raw else {}


def write_json(obj: Any, path: os.PathLike | str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: os.PathLike | str) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_text(text: str, path: os.PathLike | str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def setup_logging(log_file: os.PathLike | str | None = None, level: int = logging.INFO) -> None:
    """Log to stderr (which Snakemake's `log:` captures) and optionally to a file."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True)
