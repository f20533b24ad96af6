"""profiles/slurm: its resources, and a real run of the data stages through sbatch on a
throwaway single-node SLURM cluster (tests/slurm_cluster.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from glode.config import load_config
from slurm_cluster import SlurmCluster, ensure_slurm

BIN = Path(sys.executable).parent
PROFILE = Path(__file__).resolve().parents[1] / "profiles" / "slurm" / "config.yaml"
GPU_RULES = ("train_source", "train_target_epoch", "predict")
CPU_RULES = ("prepare_labeled", "prepare_unlabeled_target", "spans", "evaluate", "label_quality_epoch",
             "label_quality_initial", "target_model", "backbone", "tables", "figure3", "figure4")
ACCOUNT = "glode-test"  # no accounting database here, so slurmctld takes any account name


def profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


def requested(rule: str, key: str):
    """The resource a job of `rule` asks for: its set-resources entry, else the default."""
    settings = profile()
    return settings["set-resources"].get(rule, {}).get(key, settings["default-resources"].get(key))


def test_profile_sizes_every_rule():
    settings = profile()
    assert settings["executor"] == "slurm"
    defaults = settings["default-resources"]
    assert defaults["slurm_account"] == "$GLODE_SLURM_ACCOUNT"
    assert defaults["slurm_partition"] == "$GLODE_SLURM_PARTITION"
    for rule in GPU_RULES:
        resources = settings["set-resources"][rule]
        assert resources.get("gpu", 0) >= 1 or "gpu" in resources.get("gres", ""), rule
        assert resources["slurm_partition"] == "$GLODE_SLURM_GPU_PARTITION", rule
        assert resources["mem_mb"] >= 16000 and resources["runtime"] >= 60, rule
    for rule in CPU_RULES:
        resources = settings["set-resources"][rule]
        assert "gpu" not in resources and "gres" not in resources, rule
        assert requested(rule, "mem_mb") <= 8000 and requested(rule, "cpus_per_task") <= 2, rule
    # sbatch asks for cpus_per_task; Snakemake's threads say the same.
    for rule, threads in settings["set-threads"].items():
        assert requested(rule, "cpus_per_task") == threads, rule


def test_config_holds_no_threads_or_resources(project_root):
    text = (project_root / "config" / "config.yaml").read_text()
    for word in ("threads", "mem_mb", "runtime", "slurm_", "gpu:"):
        assert word not in text, word


@pytest.fixture
def slurm_cluster(tmp_path):
    reason = ensure_slurm()
    if reason:
        pytest.skip(reason)
    with SlurmCluster(log_dir=tmp_path / "slurm-logs", partition="debug") as cluster:
        yield cluster


def shrunk_config(data_root: Path, backbone: Path) -> dict:
    """The real config, shrunk to one CoNLL target and absolute paths (as in test_workflow)."""
    config = load_config({"backbone": str(backbone), "offline_backbone": str(backbone)})
    config["data_root"] = str(data_root)
    config["datasets"] = {"conll": {**config["datasets"]["conll"], "targets": ["de"]}}
    return config


def job_logs(workdir: Path, chars: int = 2000) -> str:
    """The ends of the plugin's per-job logs (a failed job's log is always kept)."""
    logs = sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
    return "\n".join(f"--- {path}\n{path.read_text(errors='replace')[-chars:]}" for path in logs)


def test_profile_submits_data_stages_through_sbatch(project_root, data_root, offline_backbone, tmp_path,
                                                     slurm_cluster):
    workdir = tmp_path / "run"
    workdir.mkdir()
    config_file = tmp_path / "shrunk.yaml"
    config_file.write_text(yaml.safe_dump(shrunk_config(data_root, offline_backbone.resolve())))
    env = {
        **slurm_cluster.env,
        # Jobs inherit this environment (sbatch --export=ALL): the glode CLI must be on their PATH.
        "PATH": f"{BIN}{os.pathsep}{slurm_cluster.env.get('PATH', '')}",
        "GLODE_SLURM_ACCOUNT": ACCOUNT,
        "GLODE_SLURM_PARTITION": "debug",
        "GLODE_SLURM_GPU_PARTITION": "debug",
    }
    cmd = [
        str(BIN / "snakemake"), "--snakefile", str(project_root / "Snakefile"), "--directory", str(workdir),
        "--profile", str(PROFILE.parent), "--workflow-profile", "none", "--configfile", str(config_file),
        # Without an accounting database `sacct` has nothing: ask squeue, which keeps finished jobs
        # for MinJobAge; look first after 2 s instead of 40 s; keep the logs of successful jobs to
        # check below; fail at once instead of the profile's retry.
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
        "--slurm-keep-successful-logs", "--retries", "0",
        "results/spans/conll/de/test.parquet",
    ]
    started = time.monotonic()
    try:
        result = subprocess.run(cmd, cwd=project_root, env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as error:
        stderr = error.stderr.decode(errors="replace") if isinstance(error.stderr, bytes) else error.stderr or ""
        pytest.fail(f"snakemake on SLURM timed out\n{stderr[-5000:]}\n{job_logs(workdir)}\n{slurm_cluster.log_tails()}")
    log = result.stdout + result.stderr
    assert result.returncode == 0, "\n".join([log[-5000:], job_logs(workdir), slurm_cluster.log_tails()])
    print(f"\nsnakemake through SLURM took {time.monotonic() - started:.0f}s")

    # The outputs, written by the jobs.
    sentences = pd.read_parquet(workdir / "results/data/conll/de/test.parquet")
    spans = pd.read_parquet(workdir / "results/spans/conll/de/test.parquet")
    assert len(sentences) > 0 and len(spans) > 0
    assert (workdir / "results/spans/conll/de/test.stats.json").exists()
    assert (workdir / "results/logs/spans/conll/de/test.log").exists()

    # Both jobs went through sbatch: slurmctld holds them, named by the plugin after rule and wildcards.
    jobs = {job["Comment"]: job for job in slurm_cluster.jobs() if job.get("WorkDir") == str(workdir)}
    assert set(jobs) == {"rule_prepare_labeled_wildcards_conll_de_test", "rule_spans_wildcards_conll_de_test"}, jobs
    for job in jobs.values():
        assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", job
        assert job["Partition"] == "debug" and job["Account"] == ACCOUNT, job
        assert f"SLURM jobid {job['JobId']}" in log, job["JobId"]
    # slurmctld's job completion file has them too.
    completed = {record["JobId"]: record["JobState"] for record in slurm_cluster.completions()}
    assert all(completed.get(job["JobId"]) == "COMPLETED" for job in jobs.values()), completed

    # The spans job asked for what the profile says.
    spans_job = jobs["rule_spans_wildcards_conll_de_test"]
    assert int(spans_job["NumCPUs"]) == requested("spans", "cpus_per_task")
    assert spans_job["MinMemoryNode"] == f"{requested('spans', 'mem_mb')}M"
    hours, minutes = divmod(requested("spans", "runtime"), 60)
    assert spans_job["TimeLimit"] == f"{hours:02d}:{minutes:02d}:00"
    # The plugin's per-job log: .snakemake/slurm_logs/rule_<rule>/<wildcards>/<slurm job id>.log
    slurm_log = workdir / ".snakemake/slurm_logs/rule_spans/conll_de_test" / f"{spans_job['JobId']}.log"
    assert slurm_log.exists(), sorted(str(p) for p in (workdir / ".snakemake/slurm_logs").rglob("*"))
