# One job per benchmark file. A target language's train split is the unlabeled target data:
# its tags go to results/analysis/gold/, a tree that training rules never take as input; a train
# split declared as raw text has no tags to hide.


rule prepare_raw_target:
    input:
        unpack(data_file_input),
        backbone=backbone_inputs(),
    output:
        "results/data/{dataset}/{lang}/train.parquet",
    log:
        "results/logs/prepare/{dataset}/{lang}/train.log",
    wildcard_constraints:
        lang=target_langs_regex(raw_text=True),
    conda:
        "../../environment.yml"
    params:
        data=raw_text_flags,
        types=lambda wc: entity_types(wc.dataset),
        sample=sample_flags(),
        backbone=tokenizer_source,
        max_seq_len=config["spans"]["max_seq_len"],
    shell:
        "glode prepare {params.data} --dataset {wildcards.dataset} --lang {wildcards.lang} "
        "--split train --role target --entity-types {params.types} --backbone {params.backbone} "
        "--max-seq-len {params.max_seq_len} --out {output} {params.sample} --log {log}"


rule prepare_unlabeled_target:
    input:
        unpack(data_file_input),
    output:
        sentences="results/data/{dataset}/{lang}/train.parquet",
        gold="results/analysis/gold/{dataset}/{lang}/train.gold.parquet",
    log:
        "results/logs/prepare/{dataset}/{lang}/train.log",
    wildcard_constraints:
        lang=target_langs_regex(raw_text=False),
    conda:
        "../../environment.yml"
    params:
        data=data_source_flags,
        types=lambda wc: entity_types(wc.dataset),
        sample=sample_flags(),
        tokenisation=tokenisation_flag,
    shell:
        "glode prepare {params.data} --dataset {wildcards.dataset} "
        "--lang {wildcards.lang} --split train --role target --entity-types {params.types} "
        "--out {output.sentences} --gold-out {output.gold} {params.sample} {params.tokenisation} --log {log}"


rule prepare_labeled:
    input:
        unpack(data_file_input),
    output:
        "results/data/{dataset}/{lang}/{split}.parquet",
    log:
        "results/logs/prepare/{dataset}/{lang}/{split}.log",
    wildcard_constraints:
        split="train|dev|test",
    conda:
        "../../environment.yml"
    params:
        data=data_source_flags,
        types=lambda wc: entity_types(wc.dataset),
        role=lambda wc: role(wc.dataset, wc.lang),
        sample=sample_flags(),
        tokenisation=tokenisation_flag,
    shell:
        "glode prepare {params.data} --dataset {wildcards.dataset} "
        "--lang {wildcards.lang} --split {wildcards.split} --role {params.role} "
        "--entity-types {params.types} --out {output} {params.sample} {params.tokenisation} --log {log}"


ruleorder: prepare_raw_target > prepare_unlabeled_target > prepare_labeled
