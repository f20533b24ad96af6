"""The Snakemake workflow: formatting, lint, the DAG, and a real run of the data stages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from glode.config import ConfigError, load_config

BIN = Path(sys.executable).parent


def run(cmd: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, **kwargs)


def test_snakefmt_clean(project_root):
    result = run([str(BIN / "snakefmt"), "--check", "."], project_root)
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakemake_lint_clean(project_root):
    result = run([str(BIN / "snakemake"), "--lint", "--configfile", "config/demo.yaml"], project_root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def dry_run(project_root: Path, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """A dry run in an empty directory, so that nothing already built hides jobs."""
    cmd = [str(BIN / "snakemake"), "--snakefile", str(project_root / "Snakefile"), "--directory", str(workdir), "-n", "--printshellcmds"]
    cmd += ["--configfile", str(project_root / "config/config.yaml")]  # the overlays below merge onto it
    return run([*cmd, *args], project_root)


def shell_commands(output: str) -> list[str]:
    return [line.split("Shell command:", 1)[-1].strip() for line in output.splitlines() if "glode " in line and ("Shell command:" in line or line.strip().startswith("glode "))]


@pytest.mark.parametrize("overlay", [[], ["--configfile", "config/demo.yaml"]])
def test_dry_run_shows_dag(project_root, tmp_path, overlay):
    overlay = [str(project_root / a) if a.endswith(".yaml") else a for a in overlay]
    result = dry_run(project_root, tmp_path, *overlay[1:])
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "prepare_unlabeled_target" in out and "spans" in out


def test_config_schema_rejects_bad_values():
    with pytest.raises(ConfigError, match="spans.max_span_len"):
        load_config({"spans": {"max_span_len": 0}})
    with pytest.raises(ConfigError, match="targets"):
        load_config({"datasets": {"other": {"entity_types": ["PER"], "source": "en"}}})  # no targets


def test_config_error_stops_snakemake_before_any_job(project_root, tmp_path):
    """A misspelled key is reported by its path, with a did-you-mean, and no job runs."""
    overlay = tmp_path / "bad.yaml"
    overlay.write_text("max_train_sentence: 100\n")  # missing s: silently a full-data run before
    workdir = tmp_path / "run"
    cmd = [str(BIN / "snakemake"), "--snakefile", str(project_root / "Snakefile"), "--directory", str(workdir), "--cores", "1"]
    result = run([*cmd, "--configfile", str(project_root / "config/demo.yaml"), str(overlay)], project_root)
    assert result.returncode != 0
    assert "config key 'max_train_sentence' is not a known setting (did you mean 'max_train_sentences'?)" in result.stdout + result.stderr
    assert not (workdir / "results").exists() and not (workdir / "resources").exists()


def shrunk_config(data_root: Path, backbone: Path) -> dict:
    """The real config, shrunk to one CoNLL target and absolute paths."""
    config = load_config({"backbone": str(backbone), "offline_backbone": str(backbone)})
    config["data_root"] = str(data_root)
    config["datasets"] = {"conll": {**config["datasets"]["conll"], "targets": ["de"]}}
    return config


def test_data_stages_run_end_to_end(project_root, data_root, offline_backbone, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    config_file = tmp_path / "shrunk.yaml"
    config_file.write_text(yaml.safe_dump(shrunk_config(data_root, offline_backbone.resolve())))
    cmd = [str(BIN / "snakemake"), "--snakefile", str(project_root / "Snakefile"), "--directory", str(workdir), "--configfile", str(config_file), "--cores", "2"]
    targets = ["results/spans/conll/de/train.parquet", "results/spans/conll/de/test.parquet"]
    result = run([*cmd, *targets], project_root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    train = pd.read_parquet(workdir / "results/data/conll/de/train.parquet")
    assert "tags" not in train.columns and len(train) == 12152
    gold = pd.read_parquet(workdir / "results/analysis/gold/conll/de/train.gold.parquet")
    assert len(gold) == 12152
    spans = pd.read_parquet(workdir / "results/spans/conll/de/train.parquet")
    assert spans["label"].isna().all()
    for name in ("prepare/conll/de/train.log", "spans/conll/de/test.log"):
        assert (workdir / "results/logs" / name).exists()
    # Nothing to do on a second run: every stage is cached.
    again = run([*cmd, "-n", *targets], project_root)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_hidden_gold_reaches_only_analysis(project_root, tmp_path):
    """In the whole DAG, only `glode prepare` (which writes it) and `glode label-quality` name the
    hidden gold of a target train split; no training or labelling job gets it."""
    result = dry_run(project_root, tmp_path, str(project_root / "config/demo.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    commands = shell_commands(result.stdout)
    assert any(c.startswith("glode train-target") for c in commands)
    touching = [c for c in commands if "results/analysis/gold" in c]
    assert touching, "the DAG should prepare and analyse hidden gold"
    for command in touching:
        stage = command.split()[1]
        assert stage in {"prepare", "label-quality"}, command
    assert any(c.startswith("glode label-quality") for c in touching)


def test_speed_levers_plan_their_cached_stages(project_root, tmp_path):
    """`mlm_vocabulary: corpus` and `cache_frozen_layers: true` plan one vocabulary per target
    language and one frozen-layer cache per train split, and hand them to every training job."""
    overlay = tmp_path / "levers.yaml"
    overlay.write_text(yaml.safe_dump({"mlm_vocabulary": "corpus", "source": {"cache_frozen_layers": True}, "target": {"cache_frozen_layers": True}}))
    result = dry_run(project_root, tmp_path / "run", str(project_root / "config/demo.yaml"), str(overlay))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    commands = shell_commands(result.stdout)
    vocab = sorted(c.split("--out ")[1].split()[0] for c in commands if c.startswith("glode vocab"))
    assert vocab == ["results/vocab/conll/es.json", "results/vocab/wikiann/hi.json"]
    frozen = {c.split("--out ")[1].split()[0] for c in commands if c.startswith("glode frozen-states")}
    assert frozen == {f"results/frozen/{d}/{lang}/train.layers6.top4.safetensors" for d, lang in (("conll", "en"), ("conll", "es"), ("wikiann", "en"), ("wikiann", "hi"))}
    sources = [c for c in commands if c.startswith("glode train-source")]
    assert all("--frozen-states results/frozen/" in c and "--cache-frozen-layers true" in c for c in sources)
    assert all(("--mlm-vocab results/vocab/" in c) == ("--use-mlm true" in c) for c in sources)
    targets = [c for c in commands if c.startswith("glode train-target")]
    assert targets and all("--source-frozen-states" in c and "--target-frozen-states" in c for c in targets)
    assert all(("--mlm-vocab" in c) == ("--aux-task mlm" in c) for c in targets)


def test_target_runs_as_one_job_each_with_target_jobs_run(project_root, tmp_path):
    """`target_jobs: run` (the demo) plans one job per target run, which also predicts the test
    split; the paper's configuration keeps one job per epoch."""
    overlay = tmp_path / "run.yaml"
    overlay.write_text(yaml.safe_dump({"target_jobs": "run"}))
    result = dry_run(project_root, tmp_path / "run", str(project_root / "config/demo.yaml"), str(overlay))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    commands = shell_commands(result.stdout)
    runs = [c for c in commands if c.startswith("glode train-target-run")]
    assert len(runs) == 2 * 12 and not any(c.startswith("glode train-target ") for c in commands)  # 2 targets x 12 variants
    assert all("--last-epoch 4" in c and "--test-predictions-out results/predictions/" in c for c in runs)  # the demo's 5 epochs
    # each run records its variant (the final model's card names it: target-{variant})
    assert all(f"--variant {c.split('--model-out ')[1].split('/')[4]} " in c for c in runs)
    predicted = [c.split("--out ")[1].split()[0] for c in commands if c.startswith("glode pseudo-label")]
    assert predicted and not any("/target-" in p for p in predicted)  # the run jobs predict their own test split
    quality = [c for c in commands if c.startswith("glode label-quality")]
    assert len(quality) == 24 + 4 and sum(c.count("/epoch") == 10 for c in quality) == 24  # one job scores a run's 5 epochs
    paper = dry_run(project_root, tmp_path / "paper")
    assert paper.returncode == 0 and "train_target_epoch" in paper.stdout and "train_target_run" not in paper.stdout


def test_study_plans_one_seed_per_invocation(project_root, tmp_path):
    """`results/study/seed1/scores.csv` (config/study.yaml) plans one seed of the study's seven
    systems on its six targets, the label quality of every epoch of its four variants, and the
    paired bootstrap of its four comparisons from the predictions beside each score."""
    result = dry_run(project_root, tmp_path, str(project_root / "config/study.yaml"), "--printshellcmds", "results/study/seed1/scores.csv")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    commands = shell_commands(result.stdout)
    collect = [c for c in commands if c.startswith("glode study collect")]
    assert len(collect) == 1 and "--initial glode=source-mlm wo_denoising=source-mlm glode_authors=source-mlm wo_denoising_authors=source-mlm" in collect[0]
    assert ("--compare target-glode=target-wo_denoising target-glode=source-tokencls "
            "target-glode_authors=target-wo_denoising_authors target-glode_authors=target-glode") in collect[0]
    # 5 target epochs, zh 6 (config.yaml's per-language override, kept by the study)
    assert collect[0].count("/metrics.json") == 6 * 7 and collect[0].count("/epoch") == 5 * 4 * 5 + 4 * 6
    assert not any("seed2" in c for c in commands)
    epochs = [c for c in commands if c.startswith("glode train-target ")]
    assert len(epochs) == 5 * 4 * 5 + 4 * 6 and all("/wo_mlm/" not in c for c in epochs)
    # one token classifier per dataset, applied to each of its targets' test files
    assert len([c for c in commands if c.startswith("glode train-tokencls ")]) == 2
    assert len([c for c in commands if c.startswith("glode predict-tokencls ")]) == 6


def test_study_plans_one_target_of_one_seed(project_root, tmp_path):
    """A chunk of the study: one target and seed, with only what that target needs."""
    result = dry_run(project_root, tmp_path, str(project_root / "config/study.yaml"), "--printshellcmds", "results/study/wikiann/zh/seed2/scores.csv")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    commands = shell_commands(result.stdout)
    (collect,) = [c for c in commands if c.startswith("glode study collect")]
    assert collect.count("/metrics.json") == 7 and all("/wikiann/zh/" in p for p in collect.split() if p.endswith(".json"))
    assert "--bootstrap-out results/study/wikiann/zh/seed2/bootstrap.csv" in collect
    assert not any("seed1" in c or "/conll/" in c for c in commands)
    tagger = [c for c in commands if c.startswith("glode train-tokencls ")]
    assert len(tagger) == 1
    plain = [c for c in commands if c.startswith("glode train-source ") and "--use-mlm false" in c]
    # the same settings as source-plain, apart from the flags that only the span model takes
    for flag in ("--use-mlm false", "--epochs 3", "--batch-size 16", "--lr 0.0001", "--head-lr 0.001", "--encoder-layers 8", "--train-top-layers 6", "--precision bf16", "--seed 2"):
        assert flag in tagger[0] and flag in plain[0]


def test_the_authors_preset_plans_its_own_target_runs_on_the_same_source_stages(project_root, tmp_path):
    """glode_authors and wo_denoising_authors (method: authors) train with the preset's flags, from
    the same source model and initial labels as the paper-literal variants: nothing before the
    target stage is planned twice."""
    result = dry_run(project_root, tmp_path, str(project_root / "config/study.yaml"), "--printshellcmds", "results/study/conll/es/seed1/scores.csv")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    commands = shell_commands(result.stdout)
    epoch0 = {c.split("/seed1/epoch0/state")[0].rsplit("/", 1)[-1]: c for c in commands if c.startswith("glode train-target --epoch 0 ")}
    assert set(epoch0) == {"glode", "wo_denoising", "glode_authors", "wo_denoising_authors"}
    authors = ("--method authors", "--target-loss-input probabilities", "--loss-averaging span", "--prune-initial-labels true",
               "--prune-overlaps-in-loss true", "--beta-schedule authors", "--thresholds authors", "--epoch-labels before_update")
    paper = ("--method paper", "--target-loss-input logits", "--loss-averaging sentence", "--prune-initial-labels false",
             "--prune-overlaps-in-loss false", "--beta-schedule paper", "--thresholds paper", "--epoch-labels refined")
    for variant, command in epoch0.items():
        assert all(flag in command for flag in (authors if variant.endswith("_authors") else paper)), variant
        assert f" --variant {variant} " in command  # recorded in the model, whose card names it
    assert "--denoise false" in epoch0["wo_denoising_authors"] and "--denoise true" in epoch0["glode_authors"]
    labels_in = {c.split("--labels-in ")[1].split()[0] for c in epoch0.values()}
    init = {c.split("--init-model ")[1].split()[0] for c in epoch0.values()}
    assert labels_in == {"results/predictions/conll/es/source-mlm/seed1/train.parquet"} and init == {"results/source/conll/mlm-es/seed1/model"}
    assert len([c for c in commands if c.startswith("glode train-source ")]) == 2  # plain and mlm-es, once each
    # a variant may override one key of its preset
    overlay = tmp_path / "mixed.yaml"
    overlay.write_text(yaml.safe_dump({"variants": {"glode_authors": {"method": "authors", "target": {"prune_initial_labels": False}}}}))
    mixed = dry_run(project_root, tmp_path / "mixed", str(project_root / "config/study.yaml"), str(overlay), "--printshellcmds",
                    "results/target/conll/es/glode_authors/seed1/epoch0/labels.parquet")
    assert mixed.returncode == 0, mixed.stdout[-3000:] + mixed.stderr[-3000:]
    (command,) = [c for c in shell_commands(mixed.stdout) if c.startswith("glode train-target ")]
    assert "--prune-initial-labels false" in command and "--method authors" in command and "--target-loss-input probabilities" in command


def test_auto_span_limit_is_one_job_per_dataset_that_reads_no_target_gold(project_root, tmp_path):
    """`max_span_len: auto` for WikiAnn: one span_limit job reads the labeled source train split
    and the targets' unlabeled train splits only; every WikiAnn spans job reads its choice, CoNLL
    keeps its fixed 4; the plan says how the limit is chosen."""
    overlay = tmp_path / "auto.yaml"
    overlay.write_text(yaml.safe_dump({"datasets": {"wikiann": {"spans": {"max_span_len": "auto"}}}}))
    result = dry_run(project_root, tmp_path / "run", str(project_root / "config/demo.yaml"), str(overlay))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    commands = shell_commands(result.stdout)
    (limit,) = [c for c in commands if c.startswith("glode span-limit")]
    read = [w.split("=")[-1] for w in limit.split() if w.endswith(".parquet")]
    assert read == ["results/data/wikiann/en/train.parquet", "results/data/wikiann/hi/train.parquet"]  # the demo's one WikiAnn target
    assert "--coverage 0.99 --cap 12" in limit and "gold" not in limit
    spans = [c for c in commands if c.startswith("glode spans")]
    wikiann = [c for c in spans if "/wikiann/" in c]
    assert wikiann and all("--max-span-len auto --max-seq-len 128 --span-limit results/spans/wikiann/span_limit.json" in c for c in wikiann)
    assert all("--max-span-len 4 --max-seq-len 128" in c and "--span-limit" not in c for c in spans if "/conll/" in c)
    assert "spans of wikiann: max_span_len auto = chosen by the span_limit job" in result.stderr


def test_the_long_span_variants_limit_4_counterparts_train_with_the_same_flags(project_root, tmp_path):
    """Issue 29's paired tests set each long-span system against itself at limit 4 under the same
    behaviour: the study's glode_authors_soft_o and wo_denoising_authors_soft_o must train exactly
    as the overlay's glode and wo_denoising do, but for the span limit and the paths."""
    study = str(project_root / "config/study.yaml")

    def epoch1_flags(workdir, variant, *overlays):
        target = f"results/target/wikiann/hi/{variant}/seed1/epoch1/labels.parquet"
        result = dry_run(project_root, tmp_path / workdir, study, *overlays, "--printshellcmds", target)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        (command,) = [c for c in shell_commands(result.stdout) if c.startswith("glode train-target --epoch 1 ")]
        words = command.split()
        flags = {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--") and not words[i + 1].startswith("--")}
        return {k: v for k, v in flags.items() if "/" not in v and k != "--variant"}  # paths name the variant

    long_spans = str(project_root / "config/study-long-spans.yaml")
    for limit4, long_span in (("glode_authors_soft_o", "glode"), ("wo_denoising_authors_soft_o", "wo_denoising")):
        at_4 = epoch1_flags(f"{limit4}-4", limit4)
        at_auto = epoch1_flags(f"{long_span}-auto", long_span, long_spans)
        assert at_4.pop("--method") == ("authors" if limit4 == "glode_authors_soft_o" else "authors_soft_o")
        assert at_auto.pop("--method") == "authors_soft_o"
        assert at_4 == at_auto and at_4["--prune-initial-labels"] == "false", (limit4, at_4, at_auto)
