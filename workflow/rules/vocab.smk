# The word pieces of a target language's train text: the MLM head's vocabulary when
# `mlm_vocabulary: corpus` (glode vocab). Built once per language, shared by every model that
# runs the MLM task on that language.


rule mlm_vocabulary:
    input:
        sentences="results/data/{dataset}/{lang}/train.parquet",
        backbone=backbone_inputs(),
    output:
        "results/vocab/{dataset}/{lang}.json",
    log:
        "results/logs/vocab/{dataset}/{lang}.log",
    conda:
        "../../environment.yml"
    params:
        tokenizer=tokenizer_source,
    shell:
        "glode vocab --sentences {input.sentences} --tokenizer {params.tokenizer} "
        "--out {output} --log {log}"
