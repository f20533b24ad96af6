"""The configuration's schema and the stages' option ranges: every mistake named by its key."""

from __future__ import annotations

import argparse

import pytest
import yaml

from glode import train_source
from glode.config import SCHEMA_PATH, ConfigError, load_config
from glode.denoise import DenoiseOptions
from glode.options import OptionError, add_options, check_ranges, field_schema, options_from_args
from glode.pseudo_label import PseudoLabelOptions
from glode.train_source import SourceTrainingOptions
from glode.train_target import TargetTrainingOptions

BAD_CONFIGS = {
    "misspelled top-level key": ({"max_train_sentence": 100}, "config key 'max_train_sentence' is not a known setting (did you mean 'max_train_sentences'?)"),
    "seed for seeds": ({"seed": 3}, "config key 'seed' is not a known setting (did you mean 'seeds'?)"),
    "variant alpha above 1": ({"variants": {"glode": {"denoise": {"alpha": 2}}}}, "config key 'variants.glode.denoise.alpha': 2 is greater than or equal to the maximum of 1"),
    "variant k 0": ({"variants": {"wo_mlm": {"denoise": {"k": 0}}}}, "config key 'variants.wo_mlm.denoise.k': 0 is less than the minimum of 1"),
    "variant unknown target key": ({"variants": {"wo_mlm": {"target": {"aux": "none"}}}}, "config key 'variants.wo_mlm.target.aux' is not a known setting"),
    "negative lr": ({"target": {"lr": -1e-4}}, "config key 'target.lr': -0.0001 is less than or equal to the minimum of 0"),
    "learning_rate for lr": ({"source": {"learning_rate": 1e-4}}, "config key 'source.learning_rate' is not a known setting"),
    "epoch for epochs": ({"target": {"epoch": 3}}, "config key 'target.epoch' is not a known setting (did you mean 'epochs'?)"),
    "aux task typo": ({"target": {"aux_task": "mlmm"}}, "config key 'target.aux_task': 'mlmm' is not one of ['mlm', 'supcon', 'none']"),
    "batch size 0": ({"source": {"batch_size": 0}}, "config key 'source.batch_size': 0 is less than the minimum of 1"),
    "beta 0": ({"denoise": {"beta_end": 0}}, "config key 'denoise.beta_end': 0 is less than or equal to the minimum of 0"),
    "bank fraction above 1": ({"denoise": {"bank_o_fraction": 1.5}}, "config key 'denoise.bank_o_fraction': 1.5 is greater than the maximum of 1"),
    "zero epochs": ({"target": {"epochs": 0}}, "config key 'target.epochs': 0 is less than the minimum of 1"),
    "misspelled variant": ({"variants": {"glod": {}}}, "config key 'variants.glod': not one of the paper's variants (did you mean 'glode'?)"),
    "study variant not configured": ({"study_variants": ["wo_denoisin"]}, "config key 'study_variants': 'wo_denoisin' is not a variant name (did you mean 'wo_denoising'?)"),
    "tokenisation of a language not in the dataset": ({"datasets": {"wikiann": {"tokenisation": {"hii": "joined"}}}}, "config key 'datasets.wikiann.tokenisation.hii': 'hii' is neither the source nor a target of wikiann (en, ar, hi, zh) (did you mean 'hi'?)"),
    "unknown tokenisation": ({"datasets": {"wikiann": {"tokenisation": {"zh": "chars"}}}}, "config key 'datasets.wikiann.tokenisation.zh': 'chars' is not one of ['words', 'joined']"),
    "negative seed": ({"seeds": [-1]}, "config key 'seeds.0': -1 is less than the minimum of 0"),
    "unknown dataset key": ({"datasets": {"conll": {"target": ["de"]}}}, "config key 'datasets.conll.target' is not a known setting (did you mean 'targets'?)"),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_config_is_named_by_its_key(name):
    overlay, message = BAD_CONFIGS[name]
    with pytest.raises(ConfigError) as err:
        load_config(overlay)
    assert message in str(err.value)


def test_declared_custom_variant_is_accepted():
    config = load_config({"custom_variants": ["my_idea"], "variants": {"my_idea": {"denoise": {"k": 50}}}})
    assert config["variants"]["my_idea"] == {"denoise": {"k": 50}}


@pytest.mark.parametrize("overlay", ["demo.yaml", "study.yaml", "workstation.yaml"])
def test_shipped_configs_are_valid(project_root, overlay):
    load_config(project_root / "config" / overlay)


def test_long_span_overlay_sets_auto_for_wikiann_only(project_root):
    config = load_config(project_root / "config/study.yaml", project_root / "config/study-long-spans.yaml")
    assert config["datasets"]["wikiann"]["spans"]["max_span_len"] == "auto"
    assert "spans" not in config["datasets"]["conll"] and config["spans"]["max_span_len"] == 4
    assert config["study_variants"] == ["glode", "wo_denoising"]


def schema_defs():
    return yaml.safe_load(SCHEMA_PATH.read_text())["$defs"]


def as_schema_pattern(props: dict) -> dict:
    """The dataclasses keep bare patterns (re.fullmatch); JSON schema anchors them."""
    return {k: {**v, "pattern": f"^({v['pattern']})$"} if "pattern" in v else v for k, v in props.items()}


@pytest.mark.parametrize(
    ("section", "cls", "set_by_workflow", "renamed"),
    [
        ("source", SourceTrainingOptions, {"seed", "use_mlm"}, {}),
        ("target", TargetTrainingOptions, {"seed", "method"}, {"num_epochs": "epochs"}),
        ("denoise", DenoiseOptions, set(), {}),
    ],
)
def test_schema_ranges_equal_the_stages_option_ranges(section, cls, set_by_workflow, renamed):
    """The config schema and the CLIs check the same ranges: neither can drift from the other."""
    expected = {renamed.get(k, k): v for k, v in as_schema_pattern(field_schema(cls)).items() if k not in set_by_workflow}
    assert schema_defs()[section]["properties"] == expected


def test_option_ranges_checked_for_a_stage_run_by_hand():
    parser = argparse.ArgumentParser()
    add_options(parser, SourceTrainingOptions)
    with pytest.raises(OptionError, match=r"--lr -0.0001: must be > 0"):
        options_from_args(SourceTrainingOptions, parser.parse_args(["--lr=-1e-4"]))
    with pytest.raises(OptionError, match=r"--precision 'half': must be one of \['auto', 'bf16', 'fp32'\]"):
        options_from_args(SourceTrainingOptions, parser.parse_args(["--precision", "half"]))
    with pytest.raises(OptionError, match=r"--device 'gpu': must match"):
        check_ranges(PseudoLabelOptions(device="gpu"))
    with pytest.raises(OptionError, match=r"--alpha 1.0: must be < 1"):
        check_ranges(DenoiseOptions(alpha=1.0))
    check_ranges(TargetTrainingOptions(device="cuda:1"))  # defaults and valid values pass


def test_train_source_cli_rejects_a_bad_flag_before_reading_inputs(tmp_path, capsys):
    """A stage run by hand: the range error comes first, in its log file, exit 1."""
    from glode import cli

    log = tmp_path / "train.log"
    argv = ["train-source", "--source-sentences", str(tmp_path / "none.parquet"), "--source-spans", str(tmp_path / "none.parquet"),
            "--backbone", str(tmp_path / "backbone"), "--out", str(tmp_path / "model"), "--batch-size", "0", "--log", str(log)]
    assert cli.main(argv) == 1
    assert "--batch-size 0: must be >= 1" in log.read_text()
    assert "--batch-size 0: must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()
    assert train_source.SourceTrainingOptions().batch_size == 8
