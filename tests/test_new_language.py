"""A language of one's own, declared in the config alone (docs/new-language.md's example)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

BIN = Path(sys.executable).parent
SENTENCES = [[("Rom", "B-LOC"), ("liegt", "O"), ("in", "O"), ("Italien", "B-LOC")], [("Anna", "B-PER"), ("Berg", "I-PER"), ("arbeitet", "O"), ("bei", "O"), ("Acme", "B-ORG")]]


def doc_example(project_root: Path) -> dict:
    """The YAML block that docs/new-language.md says the tests run."""
    text = (project_root / "docs/new-language.md").read_text()
    block = re.search(r"<!-- the test suite runs this block: tests/test_new_language.py -->\n```yaml\n(.*?)```", text, re.S)
    assert block, "docs/new-language.md lost its tested example"
    return yaml.safe_load(block.group(1))


def write_panx(path: Path, copies: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\n".join(f"{w}\t{t}" for w, t in s) + "\n" for s in SENTENCES * copies), encoding="utf-8")


def snakemake(project_root: Path, workdir: Path, overlay: dict, data_root: Path, *args: str) -> subprocess.CompletedProcess:
    config = workdir / "xx.yaml"
    config.write_text(yaml.safe_dump({**overlay, "data_root": str(data_root)}))
    cmd = [str(BIN / "snakemake"), "--snakefile", str(project_root / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(project_root / "config/config.yaml"), str(project_root / "config/demo.yaml"), str(config), "--cores", "1", *args]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(cmd, cwd=project_root, env=env, capture_output=True, text=True)


@pytest.fixture
def workdir(tmp_path):
    for split, copies in (("train", 3), ("dev", 1), ("test", 2)):
        write_panx(tmp_path / f"data/panx/xx/{split}.txt", copies)
    return tmp_path


def test_the_documented_language_is_prepared_without_a_manifest(project_root, data_root, workdir):
    overlay = doc_example(project_root)
    targets = ["results/data/wikiann/xx/train.parquet", "results/data/wikiann/xx/test.parquet", "results/data/wikiann/xx/dev.parquet"]
    result = snakemake(project_root, workdir, overlay, data_root, "--printshellcmds", *targets)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "--file data/panx/xx/train.txt --scheme BIO --encoding UTF-8" in result.stdout + result.stderr
    train = pd.read_parquet(workdir / targets[0])
    assert "tags" not in train.columns and len(train) == 6  # the hidden-gold split, no sample needed
    test = pd.read_parquet(workdir / targets[1])
    assert [list(t) for t in test["tags"][:2]] == [[t for _, t in s] for s in SENTENCES]
    from glode.io import read_parquet_metadata

    meta = read_parquet_metadata(workdir / targets[1])
    assert meta["counts"]["entities"] == {"LOC": 4, "PER": 2, "ORG": 2} and len(meta["sha256"]) == 64


def test_a_missing_declared_file_is_reported_at_planning_time(project_root, data_root, workdir):
    (workdir / "data/panx/xx/test.txt").unlink()
    result = snakemake(project_root, workdir, doc_example(project_root), data_root, "-n")
    assert result.returncode != 0
    assert "config key 'datasets.wikiann.files.xx.test': data/panx/xx/test.txt is not a readable file" in result.stdout + result.stderr


def test_an_undeclared_language_is_reported_at_planning_time(project_root, data_root, workdir):
    result = snakemake(project_root, workdir, {"datasets": {"wikiann": {"targets": ["yy"]}}}, data_root, "-n")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "config key 'datasets.wikiann': wikiann/yy has no train/test file" in out and "docs/new-language.md" in out


def test_a_pinned_sha256_is_checked(project_root, data_root, workdir):
    overlay = doc_example(project_root)
    overlay["datasets"]["wikiann"]["files"]["xx"]["test"] = {"path": "data/panx/xx/test.txt", "sha256": "0" * 64}
    result = snakemake(project_root, workdir, overlay, data_root, "results/data/wikiann/xx/test.parquet")
    assert result.returncode != 0
    log = (workdir / "results/logs/prepare/wikiann/xx/test.log").read_text()
    assert "data/panx/xx/test.txt: sha256 mismatch: expected 000" in log
    assert not (workdir / "results/data/wikiann/xx/test.parquet").exists()


def test_a_dataset_of_ones_own_needs_only_a_source_train_file(project_root, data_root, workdir):
    write_panx(workdir / "data/mine/src/train.txt", 2)
    files = {"src": {"train": "data/mine/src/train.txt"}, "xx": {"train": "data/panx/xx/train.txt", "test": "data/panx/xx/test.txt"}}
    overlay = {"datasets": {"mine": {"entity_types": ["PER", "LOC", "ORG"], "source": "src", "targets": ["xx"], "files": files}}}
    result = snakemake(project_root, workdir, overlay, data_root, "-n", "--printshellcmds")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "--dataset mine --lang src --split train" in out and "--dataset mine --lang xx --split test" in out
    assert "--lang src --split test" not in out and "--lang src --split dev" not in out and "--lang xx --split dev" not in out
