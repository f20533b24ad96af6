# The source model (paper Eq. 3): span NER on the source language, plus the MLM task on the
# target language's unlabeled text (kind `mlm-<lang>`) or without it (kind `plain`: the
# zero-shot baseline and the "w/o mlm init" ablation).


rule train_source:
    input:
        unpack(source_training_inputs),
    output:
        model=directory("results/source/{dataset}/{kind}/seed{seed}/model"),
        train_log="results/source/{dataset}/{kind}/seed{seed}/train_log.jsonl",
    log:
        "results/logs/train_source/{dataset}/{kind}/seed{seed}.log",
    wildcard_constraints:
        kind="plain|mlm-[A-Za-z_]+",
        seed=r"\d+",
    conda:
        "../../environment.yml"
    params:
        target=target_sentences_flag,
        vocab=mlm_vocabulary_flag,
        frozen=frozen_states_flags,
        flags=source_training_flags,
        backbone=config["backbone"],
    shell:
        "glode train-source --source-sentences {input.source_sentences} "
        "--source-spans {input.source_spans} {params.target} --backbone {params.backbone} "
        "--out {output.model} --train-log {output.train_log} {params.vocab} {params.frozen} {params.flags} --log {log}"
