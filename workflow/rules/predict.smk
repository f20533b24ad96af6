# A model's class distribution over every span of a split. On the target train split of a
# source model these are the initial pseudo labels; on a test split, the predictions to score.


rule predict:
    input:
        model=system_model,
        sentences="results/data/{dataset}/{lang}/{split}.parquet",
        spans="results/spans/{dataset}/{lang}/{split}.parquet",
    output:
        "results/predictions/{dataset}/{lang}/{system}/seed{seed}/{split}.parquet",
    log:
        "results/logs/predict/{dataset}/{lang}/{system}/seed{seed}/{split}.log",
    wildcard_constraints:
        system=predicted_systems_regex(),
        seed=r"\d+",
    conda:
        "../../environment.yml"
    params:
        flags=prediction_flags,
    shell:
        "glode pseudo-label --model {input.model} --sentences {input.sentences} "
        "--spans {input.spans} --out {output} {params.flags} --log {log}"
