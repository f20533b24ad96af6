# glode: cross-lingual NER with global-local pseudo-label denoising (GLoDe), as a workflow.
# Stages live in workflow/rules/*.smk, one file each; every stage is a `glode` CLI.
from snakemake.utils import min_version, validate

min_version("8.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/backbone.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/spans.smk"
include: "workflow/rules/vocab.smk"
include: "workflow/rules/frozen.smk"
include: "workflow/rules/source.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/target.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/study.smk"


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
