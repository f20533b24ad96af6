# glode: cross-lingual NER with global-local pseudo-label denoising (GLoDe), as a workflow.
# Stages live in workflow/rules/*.smk, one file each; every stage is a `glode` CLI.
import sys

from snakemake.utils import min_version, validate

min_version("8.0")
# glode's config checks, also where glode is not installed
sys.path.insert(0, workflow.basedir)
from glode.backbone import check_configured_backbone
from glode.config import (
    check_config,
    check_data_files,
    data_split_available,
    declared_file,
    is_raw_text,
    manifest_keys,
    needed_splits,
)


configfile: "config/config.yaml"


# A mistake is reported by its key path (and did-you-mean) before any job is planned; Snakemake's
# own validation then fills in the schema's defaults.
check_config(config)
validate(config, "workflow/schemas/config.schema.yaml")
# The shipped benchmark files (None where data_root has no MANIFEST.tsv), read once per plan.
MANIFEST_KEYS = manifest_keys(config)
check_data_files(config, MANIFEST_KEYS)
# A local backbone that is broken (truncated, missing files, misspelled) is named now, not by the
# first job that loads it; the offline one may still be missing (its rule builds it).
check_configured_backbone(
    config["backbone"], built_by_workflow=config["offline_backbone"]
)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/backbone.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/spans.smk"
include: "workflow/rules/vocab.smk"
include: "workflow/rules/frozen.smk"
include: "workflow/rules/source.smk"
include: "workflow/rules/tokencls.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/target.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/study.smk"


# Said once, when the plan is made: a target without a test file is trained, not scored.
if unscored_targets_message():
    print(unscored_targets_message(), file=sys.stderr)
for line in span_limit_plan_lines():
    print(line, file=sys.stderr)


rule all:
    default_target: True
    input:
        all_sentence_files(),
        all_span_files(),
        source_evaluation_files(),
        initial_pseudo_label_files(),
        target_evaluation_files(config["variants"]),
        label_quality_files(config["variants"]),
        table_files(),
        figure_files(),
        committed_study_files(),
        model_files(),


# Only the models: every configured target language's source models and target models (a
# language of one's own, with or without a test file: docs/new-language.md).
rule models:
    input:
        model_files(),
