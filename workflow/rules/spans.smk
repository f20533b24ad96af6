rule span_limit:
    input:
        unpack(span_limit_inputs),
        backbone=backbone_inputs(),
    output:
        "results/spans/{dataset}/span_limit.json",
    log:
        "results/logs/span_limit/{dataset}.log",
    conda:
        "../../environment.yml"
    params:
        tokenizer=tokenizer_source,
        flags=span_limit_flags,
    shell:
        "glode span-limit --source {input.source} {params.flags} "
        "--tokenizer {params.tokenizer} --out {output} --log {log}"


rule spans:
    input:
        unpack(span_limit_input),
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
        flags=span_flags,
    shell:
        "glode spans --sentences {input.sentences} --tokenizer {params.tokenizer} "
        "{params.flags} --out {output.spans} --stats-out {output.stats} --log {log}"
