"""The `glode` command: one subcommand per pipeline stage.

Each stage lives in its own module with a `main(argv)` function, so
`glode train-source ...` and `python -m glode.train_source ...` are the same thing.
Modules are imported lazily: `glode prepare` should not pay for importing torch.
"""

from __future__ import annotations

import importlib
import sys

STAGES = {
    "prepare": ("glode.prepare", "read the benchmark files, check sha256, write sentence Parquet"),
    "spans": ("glode.spans", "enumerate candidate spans of every sentence to Parquet"),
    "backbone": ("glode.backbone", "build the offline multilingual-e5-small Hugging Face directory"),
    "frozen-states": ("glode.frozen_states", "the frozen bottom encoder layers' output per sentence, computed once"),
    "vocab": ("glode.vocab", "the word pieces a corpus uses (the MLM head's corpus vocabulary)"),
    "train-source": ("glode.train_source", "train the source model (Eq. 3: span NER + w * MLM)"),
    "pseudo-label": ("glode.pseudo_label", "write a model's class distribution for every span"),
    "evaluate": ("glode.evaluate", "decode span predictions and score them with seqeval"),
    "train-target": ("glode.train_target", "one epoch of target training with denoising (Eqs. 4-11)"),
    "train-target-run": ("glode.target_run", "several target epochs and the test predictions in one process"),
    "label-quality": ("glode.label_quality", "F1 of pseudo labels against the hidden gold (analysis only)"),
    "tables": ("glode.tables", "the paper's Tables 1-4 as CSV and Markdown, ours beside the published"),
    "figures": ("glode.figures", "the paper's Figures 3 and 4 as PNG"),
    "study": ("glode.study", "a study's scores and label-quality curves as CSV, merged into docs/study"),
}


def _usage() -> str:
    lines = ["usage: glode <stage> [options]   (glode <stage> --help for a stage's options)", "", "stages:"]
    lines += [f"  {name:<17} {help_}" for name, (_, help_) in STAGES.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    if argv[0] in {"-V", "--version"}:
        from glode import __version__

        print(__version__)
        return 0
    stage = argv[0]
    if stage not in STAGES:
        print(f"glode: unknown stage {stage!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(STAGES[stage][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
