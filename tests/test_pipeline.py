"""The whole workflow end to end through Snakemake, on real data and a tiny random backbone:
source model -> initial pseudo labels -> target epochs as separate jobs -> evaluation ->
tables and figures; then resuming after a killed epoch, and what a changed setting reruns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import module_scratch

from glode.config import load_config
from glode.io import read_json

BIN = Path(sys.executable).parent
RUN = "results/target/wikiann/hi/glode/seed1"


def tiny_config(data_root: Path, backbone: Path) -> dict:
    """The real config, shrunk: WikiAnn hi only, 24 train sentences, one seed, GLoDe only."""
    fast = {"epochs": 1, "batch_size": 4, "grad_accumulation": 1, "lr": 1e-3, "warmup_steps": 0, "device": "cpu"}
    config = load_config(
        {
            "data_root": str(data_root),
            "backbone": str(backbone),
            "offline_backbone": str(backbone),
            "max_train_sentences": 24,
            "seeds": [1],
            "source": fast,
            "target": {**fast, "epochs": 2},
            "denoise": {"k": 8, "update_start_epoch": 1},
            "pseudo_labels": {"batch_size": 256},
            "target_init": "source",
        }
    )
    config["datasets"] = {"wikiann": {**config["datasets"]["wikiann"], "targets": ["hi"]}}
    config["variants"] = {"glode": {}}
    return config


class Workflow:
    def __init__(self, project_root: Path, workdir: Path, config: dict):
        self.project_root, self.workdir = project_root, workdir
        self.config_file = workdir / "config.yaml"
        self.config_file.write_text(yaml.safe_dump(config))

    def __call__(self, *args: str, overlay: dict | None = None) -> subprocess.CompletedProcess:
        # The shrunk config is complete: Snakemake merges config files, so a base config given
        # too would bring back the datasets and variants that were taken out.
        configs = [str(self.config_file)]
        if overlay:
            extra = self.workdir / "overlay.yaml"
            extra.write_text(yaml.safe_dump(overlay))
            configs.append(str(extra))
        cmd = [str(BIN / "snakemake"), "--snakefile", str(self.project_root / "Snakefile"), "--directory", str(self.workdir)]
        cmd += ["--workflow-profile", "none", "--cores", "2", "--configfile", *configs, "--printshellcmds", *args]
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
        result = subprocess.run(cmd, cwd=self.project_root, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        result.stdout += result.stderr  # Snakemake logs its job list and shell commands to stderr
        return result


def jobs_planned(result: subprocess.CompletedProcess) -> set[str]:
    """Rule names of a dry run's job list."""
    rules, in_stats = set(), False
    for line in result.stdout.splitlines():
        if line.startswith("Job stats"):
            in_stats = True
        elif in_stats and line.strip() and not line.startswith(("job", "---", "total")):
            rules.add(line.split()[0])
        elif in_stats and line.startswith("total"):
            break
    return rules - {"all"}


@pytest.fixture(scope="module")
def workflow(project_root, data_root, tiny_backbone, tmp_path_factory):
    with module_scratch(tmp_path_factory, "pipeline") as workdir:
        yield Workflow(project_root, workdir, tiny_config(data_root, tiny_backbone))


def test_killed_epoch_resumes_and_pipeline_finishes(workflow):
    # First run stops after epoch 0, as a run killed during epoch 1 would: its state is kept.
    workflow(f"{RUN}/epoch0/labels.parquet", f"{RUN}/epoch0/state")
    assert (workflow.workdir / RUN / "epoch0/state/model/model.safetensors").exists()
    epoch0_labels = (workflow.workdir / RUN / "epoch0/labels.parquet").stat().st_mtime_ns

    result = workflow()  # everything `rule all` asks for
    assert "--epoch 1" in result.stdout and "--epoch 0 " not in result.stdout, "epoch 0 must not rerun"
    assert (workflow.workdir / RUN / "epoch0/labels.parquet").stat().st_mtime_ns == epoch0_labels
    # intermediate states are temporary; the final model is kept
    assert not (workflow.workdir / RUN / "epoch1/state").exists()
    assert (workflow.workdir / RUN / "model/model.safetensors").exists()

    labels = pd.read_parquet(workflow.workdir / RUN / "epoch1/labels.parquet")
    assert set(labels["epoch"]) == {1}
    metrics = read_json(workflow.workdir / "results/eval/wikiann/hi/target-glode/seed1/metrics.json")
    assert metrics["counts"]["gold_entities"] == 1228  # the full WikiAnn hi test file
    quality = read_json(workflow.workdir / "results/analysis/label_quality/wikiann/hi/glode/seed1/epoch1.json")
    assert 0.0 <= quality["seqeval"]["f1"] <= 1.0
    table3 = pd.read_csv(workflow.workdir / "results/tables/table3.csv")
    assert "hi_mean" in table3.columns
    for figure in ("figure3", "figure4"):
        assert (workflow.workdir / f"results/figures/{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Nothing to be done" in workflow("-n").stdout
    workflow("--report", "results/report.html")
    html = (workflow.workdir / "results/report.html").read_text(errors="replace")
    assert "table3.csv" in html and "figure3.png" in html
    # the committed study (docs/study) in its own category, apart from this run's one-seed tables
    assert "study_scores.csv" in html and "Committed study (study scale" in html
    assert "differences between systems and variants at this scale are noise" in html


def test_changed_target_setting_reruns_only_target_stages(workflow):
    planned = jobs_planned(workflow("-n", overlay={"target": {"lr": 5e-4}}))
    assert {"train_target_epoch", "target_model", "predict", "evaluate", "label_quality_epoch", "tables"} <= planned
    assert not planned & {"prepare_labeled", "prepare_unlabeled_target", "spans", "train_source", "label_quality_initial"}


def test_changed_source_setting_reruns_source_and_after(workflow):
    planned = jobs_planned(workflow("-n", overlay={"source": {"lr": 5e-4}}))
    assert {"train_source", "train_target_epoch", "evaluate"} <= planned
    assert not planned & {"prepare_labeled", "prepare_unlabeled_target", "spans"}
