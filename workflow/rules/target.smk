# The target model (paper Eq. 5) with global-local denoising (Eqs. 6-11), one job per epoch.
# Epoch e resumes from epoch e-1's saved state and writes the labels it refined; the states are
# temporary, and the last one's model is kept as the variant's final model.


rule train_target_epoch:
    input:
        unpack(target_epoch_inputs),
    output:
        state=temp(
            directory(
                "results/target/{dataset}/{lang}/{variant}/seed{seed}/epoch{epoch}/state"
            )
        ),
        labels="results/target/{dataset}/{lang}/{variant}/seed{seed}/epoch{epoch}/labels.parquet",
        train_log="results/target/{dataset}/{lang}/{variant}/seed{seed}/epoch{epoch}/train_log.jsonl",
    log:
        "results/logs/train_target/{dataset}/{lang}/{variant}/seed{seed}/epoch{epoch}.log",
    wildcard_constraints:
        variant="[A-Za-z0-9_]+",
        seed=r"\d+",
        epoch=r"\d+",
    conda:
        "../../environment.yml"
    params:
        state_in=state_in_flag,
        flags=target_training_flags,
        backbone=config["backbone"],
    shell:
        "glode train-target --epoch {wildcards.epoch} {params.state_in} "
        "--source-sentences {input.source_sentences} --source-spans {input.source_spans} "
        "--target-sentences {input.target_sentences} --target-spans {input.target_spans} "
        "--labels-in {input.labels} --backbone {params.backbone} --state-out {output.state} "
        "--labels-out {output.labels} --train-log {output.train_log} {params.flags} --log {log}"


rule target_model:
    input:
        last_epoch_state,
    output:
        directory("results/target/{dataset}/{lang}/{variant}/seed{seed}/model"),
    log:
        "results/logs/target_model/{dataset}/{lang}/{variant}/seed{seed}.log",
    wildcard_constraints:
        variant="[A-Za-z0-9_]+",
        seed=r"\d+",
    conda:
        "../../environment.yml"
    shell:
        "(cp -r {input}/model {output}.partial && mv {output}.partial {output}) > {log} 2>&1"
