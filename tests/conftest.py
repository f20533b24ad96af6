"""Shared fixtures: the project's paths, the real data root and a tiny random backbone; and the
tiny synthetic CoNLL-like data that the pipeline tests write (`from conftest import ...`).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("GLODE_DATA_ROOT", PROJECT_ROOT.parent / "shared" / "datasets")).resolve()
OFFLINE_BACKBONE = Path(os.environ.get("GLODE_BACKBONE", PROJECT_ROOT / "resources" / "multilingual-e5-small"))


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


# What the whole suite holds on disk at its peak (measured: 0.76 GB, README "Disk"), with a margin.
SUITE_DISK_BYTES = 2**30


def _check_free_disk(config, n_tests: int) -> None:
    """Stop a large run at once with one clear line when its temporary directory's disk is too full:
    otherwise over a hundred tests fail one by one with "No space left on device"."""
    if n_tests < 100:  # a file or a few: far less than the whole suite's peak
        return
    base = Path(config.option.basetemp or tempfile.gettempdir())
    while not base.exists():
        base = base.parent
    free = shutil.disk_usage(base).free
    if free < SUITE_DISK_BYTES:
        pytest.exit(f"only {free / 2**30:.2f} GiB free on the disk of {base}; the test suite needs about {SUITE_DISK_BYTES / 2**30:.1f} GiB "
                    "there (free some space, or point TMPDIR or --basetemp at a larger disk)", returncode=1)


def pytest_collection_modifyitems(config, items):
    _check_free_disk(config, len(items))
    if _has_cuda():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "MANIFEST.tsv").exists():
        pytest.fail(f"benchmark data not found at {DATA_ROOT} (set GLODE_DATA_ROOT)")
    return DATA_ROOT


@pytest.fixture(scope="session")
def offline_backbone() -> Path:
    """The real multilingual-e5-small directory, built by `make setup` (`glode backbone`)."""
    if not (OFFLINE_BACKBONE / "config.json").exists():
        pytest.fail(f"offline backbone not built at {OFFLINE_BACKBONE}: run `make setup` first")
    return OFFLINE_BACKBONE


@contextmanager
def module_scratch(tmp_path_factory, name: str):
    """A module fixture's directory, removed once the module is done. pytest frees each passed
    test's tmp_path (tmp_path_retention_policy), never a fixture's: the big ones (a 470 MB
    backbone, per-epoch model states) would otherwise all sit on disk until the run ends."""
    path = tmp_path_factory.mktemp(name)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT with the real XLM-R tokenizer: fast, and shaped like e5."""
    from glode.testing import build_tiny_backbone

    return build_tiny_backbone(tmp_path_factory.mktemp("tiny_backbone"))


# Tiny synthetic CoNLL-like data (tests/test_source_pipeline.py, tests/test_train_target.py).

ENTITY_TYPES = ["PER", "LOC", "ORG", "MISC"]
CLASSES = ["O", *ENTITY_TYPES]

_NAMES = {
    "PER": [["John", "Smith"], ["Maria"], ["Angela", "Merkel"], ["Pedro", "de", "la", "Rosa"]],
    "LOC": [["Berlin"], ["New", "York"], ["Madrid"], ["Amsterdam"]],
    "ORG": [["EU"], ["Real", "Madrid"], ["United", "Nations"], ["Siemens"]],
    "MISC": [["German"], ["Dutch"], ["World", "Cup"]],
}
_FILLER = ["said", "on", "Monday", "that", "the", "visit", "to", "was", "a", "success", "in", "1996", "and", "talks", "with"]


def synthetic_sentences(n: int, seed: int, lang_suffix: str = "") -> pd.DataFrame:
    """n random sentences of filler words and 1-2 entities, with BIO tags."""
    rng = random.Random(seed)
    rows = []
    for sent_id in range(n):
        tokens, tags = [], []
        for _ in range(rng.randint(1, 2)):
            tokens += [w + lang_suffix for w in rng.sample(_FILLER, rng.randint(1, 4))]
            tags += ["O"] * (len(tokens) - len(tags))
            etype = rng.choice(ENTITY_TYPES)
            words = rng.choice(_NAMES[etype])
            tokens += words
            tags += [f"B-{etype}"] + [f"I-{etype}"] * (len(words) - 1)
        tokens.append(".")
        tags.append("O")
        rows.append({"sent_id": sent_id, "line": 1 + sent_id * 20, "tokens": tokens, "tags": tags})
    return pd.DataFrame(rows)


def write_sentences(df: pd.DataFrame, path, lang: str, split: str, role: str, labeled: bool) -> None:
    import pyarrow as pa

    from glode.io import write_parquet

    columns = {
        "sent_id": pa.array(df["sent_id"], pa.int64()),
        "line": pa.array(df["line"], pa.int64()),
        "tokens": pa.array(df["tokens"].tolist(), pa.list_(pa.string())),
    }
    if labeled:
        columns["tags"] = pa.array(df["tags"].tolist(), pa.list_(pa.string()))
    meta = dict(dataset="synthetic", lang=lang, split=split, role=role, entity_types=ENTITY_TYPES, labeled=labeled, scheme="BIO", encoding="utf-8")
    write_parquet(pa.table(columns), path, metadata=meta)


def write_spans(df: pd.DataFrame, path, tokenizer, labeled: bool) -> None:
    from glode.io import write_parquet
    from glode.spans import build_span_table

    source = df if labeled else df.drop(columns=["tags"])
    table, stats = build_span_table(source, tokenizer, max_span_len=4, max_seq_len=128)
    write_parquet(table, path, metadata={**stats, "entity_types": ENTITY_TYPES, "labeled": labeled})
    (path.parent / (path.stem + ".stats.json")).write_text(json.dumps(stats))
