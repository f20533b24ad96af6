# The target model (paper Eq. 5) with global-local denoising (Eqs. 6-11).
# `target_jobs: epoch` (the paper's configuration): one job per epoch; epoch e resumes from epoch
# e-1's saved state and writes the labels it refined; the states are temporary, and the last
# one's model is kept as the variant's final model. `target_jobs: run` (the demo): one job per
# run trains every epoch and predicts the test split in one process (`glode train-target-run`),
# writing the same files, byte for byte, with one process start-up instead of epochs + 1.
# Both pass the variant (`--variant {variant}`), which the final model's card names (target-{variant}).


if config.get("target_jobs", "epoch") == "epoch":

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
            vocab=mlm_vocabulary_flag,
            frozen=frozen_states_flags,
            flags=target_training_flags,
            backbone=config["backbone"],
            final_model="results/target/{dataset}/{lang}/{variant}/seed{seed}/model",
        shell:
            "glode train-target --epoch {wildcards.epoch} --variant {wildcards.variant} {params.state_in} "
            "--source-sentences {input.source_sentences} --source-spans {input.source_spans} "
            "--target-sentences {input.target_sentences} --target-spans {input.target_spans} "
            "--labels-in {input.labels} --backbone {params.backbone} --state-out {output.state} "
            "--labels-out {output.labels} --train-log {output.train_log} --final-model {params.final_model} "
            "{params.vocab} {params.frozen} {params.flags} --log {log}"

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

else:

    for n_epochs, run_langs in target_run_epoch_groups().items():

        rule:
            name:
                f"train_target_run_{n_epochs}"
            input:
                unpack(target_run_inputs),
            output:
                labels=expand(
                    "results/target/{{dataset}}/{{lang}}/{{variant}}/seed{{seed}}/epoch{epoch}/labels.parquet",
                    epoch=range(n_epochs),
                ),
                train_logs=expand(
                    "results/target/{{dataset}}/{{lang}}/{{variant}}/seed{{seed}}/epoch{epoch}/train_log.jsonl",
                    epoch=range(n_epochs),
                ),
                model=directory(
                    "results/target/{dataset}/{lang}/{variant}/seed{seed}/model"
                ),
                test="results/predictions/{dataset}/{lang}/target-{variant}/seed{seed}/test.parquet",
            log:
                "results/logs/train_target/{dataset}/{lang}/{variant}/seed{seed}/run.log",
            wildcard_constraints:
                lang="|".join(run_langs),
                variant="[A-Za-z0-9_]+",
                seed=r"\d+",
            conda:
                "../../environment.yml"
            params:
                last_epoch=n_epochs - 1,
                run_dir=target_run_dir,
                state_in=state_in_flag,
                vocab=mlm_vocabulary_flag,
                frozen=frozen_states_flags,
                flags=target_training_flags,
                predict=run_prediction_flags(),
                backbone=config["backbone"],
            shell:
                "glode train-target-run --last-epoch {params.last_epoch} --run-dir {params.run_dir} "
                "--variant {wildcards.variant} {params.state_in} --source-sentences {input.source_sentences} "
                "--source-spans {input.source_spans} --target-sentences {input.target_sentences} "
                "--target-spans {input.target_spans} --labels-in {input.labels} "
                "--backbone {params.backbone} --model-out {output.model} "
                "--test-sentences {input.test_sentences} --test-spans {input.test_spans} "
                "--test-predictions-out {output.test} {params.predict} {params.vocab} "
                "{params.frozen} {params.flags} --log {log}"
