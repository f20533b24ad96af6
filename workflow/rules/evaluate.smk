# Scores count every gold entity of the full test file (seqeval), including those no span reaches.


rule evaluate:
    input:
        predictions="results/predictions/{dataset}/{lang}/{system}/seed{seed}/test.parquet",
        gold="results/data/{dataset}/{lang}/test.parquet",
        spans="results/spans/{dataset}/{lang}/test.parquet",
        stats="results/spans/{dataset}/{lang}/test.stats.json",
    output:
        metrics=METRICS_PATTERN,
        conll="results/eval/{dataset}/{lang}/{system}/seed{seed}/predictions.conll",
    log:
        "results/logs/evaluate/{dataset}/{lang}/{system}/seed{seed}.log",
    conda:
        "../../environment.yml"
    shell:
        "glode evaluate --predictions {input.predictions} --gold {input.gold} "
        "--spans {input.spans} --spans-stats {input.stats} --out {output.metrics} "
        "--conll-out {output.conll} --log {log}"
