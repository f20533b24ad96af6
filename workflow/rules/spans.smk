rule spans:
    input:
        sentences="results/data/{dataset}/{lang}/{split}.parquet",
        backbone=backbone_inputs(),
    output:
        spans="results/spans/{dataset}/{lang}/{split}.parquet",
        stats="results/spans/{dataset}/{lang}/{split}.stats.json",
    log:
        "results/logs/spans/{dataset}/{lang}/{split}.log",
    conda:
        "../../environment.yml"
    params:
        tokenizer=tokenizer_source,
        flags=cli_flags(config["spans"]),
    shell:
        "glode spans --sentences {input.sentences} --tokenizer {params.tokenizer} "
        "{params.flags} --out {output.spans} --stats-out {output.stats} --log {log}"
