# The field's standard zero-shot baseline (system `source-tokencls`): a token classifier on the
# same backbone, trained as `source-plain` is (the `source` settings, no MLM), its repaired BIO
# tags scored by rule `evaluate` like every other system.


rule train_tokencls:
    input:
        sentences=lambda w: sentences_file(w.dataset, source_lang(w.dataset), "train"),
        backbone=backbone_inputs(),
    output:
        model=directory("results/source/{dataset}/tokencls/seed{seed}/model"),
        train_log="results/source/{dataset}/tokencls/seed{seed}/train_log.jsonl",
    log:
        "results/logs/train_tokencls/{dataset}/seed{seed}.log",
    wildcard_constraints:
        seed=r"\d+",
    conda:
        "../../environment.yml"
    params:
        flags=tokencls_training_flags,
        max_seq_len=config["spans"]["max_seq_len"],
        backbone=tokenizer_source,
    shell:
        "glode train-tokencls --source-sentences {input.sentences} --backbone {params.backbone} "
        "--max-seq-len {params.max_seq_len} --out {output.model} --train-log {output.train_log} "
        "{params.flags} --log {log}"


rule predict_tokencls:
    input:
        model="results/source/{dataset}/tokencls/seed{seed}/model",
        sentences="results/data/{dataset}/{lang}/{split}.parquet",
    output:
        "results/predictions/{dataset}/{lang}/source-tokencls/seed{seed}/{split}.parquet",
    log:
        "results/logs/predict/{dataset}/{lang}/source-tokencls/seed{seed}/{split}.log",
    wildcard_constraints:
        seed=r"\d+",
    conda:
        "../../environment.yml"
    params:
        flags=tokencls_prediction_flags(),
    shell:
        "glode predict-tokencls --model {input.model} --sentences {input.sentences} "
        "--out {output} {params.flags} --log {log}"
