rule backbone:
    output:
        directory(config["offline_backbone"]),
    log:
        "results/logs/backbone.log",
    conda:
        "../../environment.yml"
    shell:
        "glode backbone --out {output} --log {log}"
