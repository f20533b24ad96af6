# The frozen bottom encoder layers' output for every sentence of a train split, computed once
# (`cache_frozen_layers: true`): shared by the source model and every target epoch of every
# variant that freezes the same layers of the same backbone.


rule frozen_states:
    input:
        sentences="results/data/{dataset}/{lang}/train.parquet",
        spans="results/spans/{dataset}/{lang}/train.parquet",
        backbone=backbone_inputs(),
    output:
        "results/frozen/{dataset}/{lang}/train.layers{layers}.top{top}.safetensors",
    log:
        "results/logs/frozen/{dataset}/{lang}/train.layers{layers}.top{top}.log",
    wildcard_constraints:
        layers=r"\d+",
        top=r"\d+",
    conda:
        "../../environment.yml"
    params:
        backbone=tokenizer_source,
    shell:
        "glode frozen-states --sentences {input.sentences} --spans {input.spans} "
        "--backbone {params.backbone} --encoder-layers {wildcards.layers} "
        "--train-top-layers {wildcards.top} --out {output} --log {log}"
