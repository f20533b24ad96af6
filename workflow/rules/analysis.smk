# Analysis only: pseudo-label quality against the hidden gold of the target train split.
# These are the only rules that read results/analysis/gold/.


# With `target_jobs: run`, one job scores every epoch of a run (one process start-up).
if config.get("target_jobs", "epoch") == "epoch":

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

else:

    for n_epochs, run_langs in target_run_epoch_groups().items():

        rule:
            name:
                f"label_quality_run_{n_epochs}"
            input:
                labels=expand(
                    "results/target/{{dataset}}/{{lang}}/{{variant}}/seed{{seed}}/epoch{epoch}/labels.parquet",
                    epoch=range(n_epochs),
                ),
                gold="results/analysis/gold/{dataset}/{lang}/train.gold.parquet",
            output:
                expand(
                    "results/analysis/label_quality/{{dataset}}/{{lang}}/{{variant}}/seed{{seed}}/epoch{epoch}.json",
                    epoch=range(n_epochs),
                ),
            log:
                "results/logs/label_quality/{dataset}/{lang}/{variant}/seed{seed}/run.log",
            wildcard_constraints:
                lang="|".join(run_langs),
                variant="[A-Za-z0-9_]+",
                seed=r"\d+",
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
