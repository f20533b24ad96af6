# The paper's tables and figures, ours beside the published numbers.


rule tables:
    input:
        table_metrics,
    output:
        csv=report(
            "results/tables/table{table}.csv",
            caption="../report/tables.rst",
            category="Tables",
        ),
        md="results/tables/table{table}.md",
    log:
        "results/logs/tables/table{table}.log",
    wildcard_constraints:
        table="[1-4]",
    conda:
        "../../environment.yml"
    params:
        backbone=config["backbone"],
        scale=scale_text(),
    shell:
        "glode tables --table {wildcards.table} --metrics {input} --backbone {params.backbone:q} "
        "--scale {params.scale:q} --out {output.csv} --out-md {output.md} --log {log}"


rule figure3:
    input:
        figure3_quality_files(),
    output:
        report(
            "results/figures/figure3.png",
            caption="../report/figure3.rst",
            category="Figures",
        ),
    log:
        "results/logs/figures/figure3.log",
    conda:
        "../../environment.yml"
    shell:
        "glode figures --figure 3 --quality {input} --out {output} --log {log}"


rule figure4:
    input:
        metrics=source_evaluation_files(),
        source=figure4_sentences("source"),
        target=figure4_sentences("target"),
    output:
        report(
            "results/figures/figure4.png",
            caption="../report/figure4.rst",
            category="Figures",
        ),
    log:
        "results/logs/figures/figure4.log",
    conda:
        "../../environment.yml"
    shell:
        "glode figures --figure 4 --metrics {input.metrics} --source-sentences {input.source} "
        "--target-sentences {input.target} --out {output} --log {log}"
