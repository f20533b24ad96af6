# Analysis only: pseudo-label quality against the hidden gold of the target train split.
# These are the only rules that read results/analysis/gold/.


rule label_quality_epoch:
    input:
        labels="results/target/{dataset}/{lang}/{variant}/seed{seed}/epoch{epoch}/labels.parquet",
        gold="results/analysis/gold/{dataset}/{lang}/train.gold.parquet",
    output:
        "results/analysis/label_quality/{dataset}/{lang}/{variant}/seed{seed}/epoch{epoch}.json",
    log:
        "results/logs/label_quality/{dataset}/{lang}/{variant}/seed{seed}/epoch{epoch}.log",
    wildcard_constraints:
        variant="[A-Za-z0-9_]+",
        seed=r"\d+",
        epoch=r"\d+",
    conda:
        "../../environment.yml"
    shell:
        "glode label-quality --labels {input.labels} --gold {input.gold} --out {output} --log {log}"


rule label_quality_initial:
    input:
        labels="results/predictions/{dataset}/{lang}/{system}/seed{seed}/train.parquet",
        gold="results/analysis/gold/{dataset}/{lang}/train.gold.parquet",
    output:
        "results/analysis/label_quality/{dataset}/{lang}/{system}/seed{seed}/initial.json",
    log:
        "results/logs/label_quality/{dataset}/{lang}/{system}/seed{seed}/initial.log",
    wildcard_constraints:
        system="source-plain|source-mlm",
        seed=r"\d+",
    conda:
        "../../environment.yml"
    shell:
        "glode label-quality --labels {input.labels} --gold {input.gold} --out {output} --log {log}"
