# A study's figures per seed as small CSV files (glode study collect), to be merged into the
# committed docs/study/ with `glode study report` (results/ does not outlive its machine).


rule study_seed:
    input:
        metrics=study_metrics_files,
        quality=study_quality_files,
    output:
        scores="results/study/seed{seed}/scores.csv",
        quality="results/study/seed{seed}/label_quality.csv",
    log:
        "results/logs/study/seed{seed}.log",
    wildcard_constraints:
        seed=r"\d+",
    conda:
        "../../environment.yml"
    params:
        initial=study_initial_flags,
    shell:
        "glode study collect --metrics {input.metrics} --quality {input.quality} "
        "--initial {params.initial} --scores-out {output.scores} --quality-out {output.quality} --log {log}"
