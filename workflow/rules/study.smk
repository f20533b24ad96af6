# A study's figures per seed as small CSV files (glode study collect), to be merged into the
# committed docs/study/ with `glode study report` (results/ does not outlive its machine): the
# scores, the label-quality curves, and each comparison's paired bootstrap resamples, computed
# from the run's predictions as soon as the seed is collected. One job per seed and all targets,
# or per seed and one target (a chunk of a long study).
STUDY_COLLECT = (
    "glode study collect --metrics {input.metrics} --quality {input.quality} "
    "--initial {params.initial} --compare {params.compare} --scores-out {output.scores} "
    "--quality-out {output.quality} --bootstrap-out {output.bootstrap} --log {log}"
)


rule study_seed:
    input:
        metrics=study_metrics_files,
        predictions=study_prediction_files,
        quality=study_quality_files,
    output:
        scores="results/study/seed{seed}/scores.csv",
        quality="results/study/seed{seed}/label_quality.csv",
        bootstrap="results/study/seed{seed}/bootstrap.csv",
    log:
        "results/logs/study/seed{seed}.log",
    wildcard_constraints:
        seed=r"\d+",
    conda:
        "../../environment.yml"
    params:
        initial=study_initial_flags,
        compare=study_comparison_flags,
    shell:
        STUDY_COLLECT


rule study_target_seed:
    input:
        metrics=study_metrics_files,
        predictions=study_prediction_files,
        quality=study_quality_files,
    output:
        scores="results/study/{dataset}/{lang}/seed{seed}/scores.csv",
        quality="results/study/{dataset}/{lang}/seed{seed}/label_quality.csv",
        bootstrap="results/study/{dataset}/{lang}/seed{seed}/bootstrap.csv",
    log:
        "results/logs/study/{dataset}/{lang}/seed{seed}.log",
    wildcard_constraints:
        seed=r"\d+",
    conda:
        "../../environment.yml"
    params:
        initial=study_initial_flags,
        compare=study_comparison_flags,
    shell:
        STUDY_COLLECT


# The committed study (docs/study, made at the study scale over several sessions) in this run's
# HTML report, beside and apart from this run's own tables.
rule committed_study:
    input:
        multiext(
            f"{COMMITTED_STUDY}/", "scores.csv", "figure3.png", "figure3_per_seed.png"
        ),
    output:
        scores=report(
            "results/committed_study/study_scores.csv",
            caption="../report/study.rst",
            category="Committed study (study scale, docs/study)",
        ),
        significance=report(
            "results/committed_study/study_significance.csv",
            caption="../report/study_significance.rst",
            category="Committed study (study scale, docs/study)",
        ),
        figure3=report(
            "results/committed_study/study_figure3.png",
            caption="../report/study_figure3.rst",
            category="Committed study (study scale, docs/study)",
        ),
        per_seed=report(
            "results/committed_study/study_figure3_per_seed.png",
            caption="../report/study_figure3.rst",
            category="Committed study (study scale, docs/study)",
        ),
    log:
        "results/logs/study/committed_study.log",
    conda:
        "../../environment.yml"
    params:
        study=lambda w, input: Path(input[0]).parent,
        out_dir=lambda w, output: Path(output.scores).parent,
    shell:
        "glode study render --study {params.study} --out-dir {params.out_dir} --log {log}"
