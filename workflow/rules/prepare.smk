# One job per benchmark file. A target language's train split is the unlabeled target data:
# its tags go to results/analysis/gold/, a tree that training rules never take as input.


rule prepare_unlabeled_target:
    output:
        sentences="results/data/{dataset}/{lang}/train.parquet",
        gold="results/analysis/gold/{dataset}/{lang}/train.gold.parquet",
    log:
        "results/logs/prepare/{dataset}/{lang}/train.log",
    wildcard_constraints:
        lang=target_languages_regex(),
    conda:
        "../../environment.yml"
    params:
        data_root=config["data_root"],
        types=lambda wc: entity_types(wc.dataset),
        download=download_flags(),
        sample=sample_flags(),
    shell:
        "glode prepare --data-root {params.data_root} --dataset {wildcards.dataset} "
        "--lang {wildcards.lang} --split train --role target --entity-types {params.types} "
        "--out {output.sentences} --gold-out {output.gold} {params.download} {params.sample} --log {log}"


rule prepare_labeled:
    output:
        "results/data/{dataset}/{lang}/{split}.parquet",
    log:
        "results/logs/prepare/{dataset}/{lang}/{split}.log",
    wildcard_constraints:
        split="train|dev|test",
    conda:
        "../../environment.yml"
    params:
        data_root=config["data_root"],
        types=lambda wc: entity_types(wc.dataset),
        role=lambda wc: role(wc.dataset, wc.lang),
        download=download_flags(),
        sample=sample_flags(),
    shell:
        "glode prepare --data-root {params.data_root} --dataset {wildcards.dataset} "
        "--lang {wildcards.lang} --split {wildcards.split} --role {params.role} "
        "--entity-types {params.types} --out {output} {params.download} {params.sample} --log {log}"


ruleorder: prepare_unlabeled_target > prepare_labeled
