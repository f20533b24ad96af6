"""The `glode` command: one subcommand per pipeline stage.

Each stage lives in its own module with a `main(argv)` function, so
`glode train-source ...` and `python -m glode.train_source ...` are the same thing (the two
token-classifier stages share glode.tokencls, as `train_main` and `predict_main`).
Modules are imported lazily: `glode prepare` should not pay for importing torch.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

STAGES = {
    "prepare": ("glode.prepare", "read the benchmark files, check sha256, write sentence Parquet"),
    "span-limit": ("glode.span_limit", "choose max_span_len from the source entities (spans.max_span_len: auto)"),
    "spans": ("glode.spans", "enumerate candidate spans of every sentence to Parquet"),
    "backbone": ("glode.backbone", "build the offline multilingual-e5-small Hugging Face directory"),
    "frozen-states": ("glode.frozen_states", "the frozen bottom encoder layers' output per sentence, computed once"),
    "vocab": ("glode.vocab", "the word pieces a corpus uses (the MLM head's corpus vocabulary)"),
    "train-source": ("glode.train_source", "train the source model (Eq. 3: span NER + w * MLM)"),
    "pseudo-label": ("glode.pseudo_label", "write a model's class distribution for every span"),
    "train-tokencls": ("glode.tokencls:train_main", "train the token-classification baseline (source-tokencls) on the source labels"),
    "predict-tokencls": ("glode.tokencls:predict_main", "tag sentences with a train-tokencls model (repaired BIO per word)"),
    "evaluate": ("glode.evaluate", "decode span predictions and score them with seqeval"),
    "tag": ("glode.tag", "run a trained model on new text (plain text, CoNLL, JSONL) and write its entities"),
    "train-target": ("glode.train_target", "one epoch of target training with denoising (Eqs. 4-11)"),
    "train-target-run": ("glode.target_run", "several target epochs and the test predictions in one process"),
    "label-quality": ("glode.label_quality", "F1 of pseudo labels against the hidden gold (analysis only)"),
    "tables": ("glode.tables", "the paper's Tables 1-4 as CSV and Markdown, ours beside the published"),
    "figures": ("glode.figures", "the paper's Figures 3 and 4 as PNG"),
    "travel": ("glode.travel", "the real backbone as a small pack for a GPU machine (pack, unpack with a tensor check, coverage check)"),
    "study": ("glode.study", "a study's scores and label-quality curves as CSV, merged into docs/study"),
}


def _usage() -> str:
    lines = ["usage: glode <stage> [options] [--verbose]   (glode <stage> --help for a stage's options)", "",
             "A failing stage writes its error to its --log file and to stderr and exits 1; the traceback",
             "is shown for unexpected errors, and for every error with --verbose.", "", "stages:"]
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
    module_name, _, entry = STAGES[stage][0].partition(":")  # "module" (its main) or "module:function"
    module = importlib.import_module(module_name)
    return run_stage(getattr(module, entry or "main"), argv[1:])


# Errors whose message says what is wrong: a missing or unreadable path (the message names it),
# and a ValueError that glode raised (bad input, a bad setting). The message alone is the report.
# A ValueError from inside a library (numpy, torch) and anything else are unexpected and get
# their traceback.
PATH_ERRORS = (FileNotFoundError, NotADirectoryError, PermissionError)
GLODE_PACKAGE = Path(__file__).resolve().parent


def raised_by_glode(err: BaseException) -> bool:
    """Whether the innermost Python frame of `err`'s traceback is in the glode package (an
    OSError from `open` counts: builtins have no frame of their own)."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return GLODE_PACKAGE in Path(tb.tb_frame.f_code.co_filename).resolve().parents


def is_expected(err: BaseException) -> bool:
    return isinstance(err, PATH_ERRORS) or (isinstance(err, ValueError) and raised_by_glode(err))


def log_file_of(argv: list[str]) -> Path | None:
    """The stage's `--log FILE` (or `--log=FILE`), if given."""
    for i, arg in enumerate(argv):
        if arg == "--log" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--log="):
            return Path(arg.split("=", 1)[1])
    return None


def logs_to(path: Path) -> bool:
    return any(getattr(h, "baseFilename", None) == str(path.resolve()) for h in logging.getLogger().handlers)


def run_stage(stage_main, argv: list[str]) -> int:
    """Run a stage's main; on failure write the error to its --log file and stderr and return 1,
    so that the message is in the job's log file under Snakemake and SLURM, not only in a
    traceback on stderr."""
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    try:
        return int(stage_main(argv) or 0)
    except Exception as err:  # noqa: BLE001 - every failure is reported the same way
        expected = is_expected(err)
        log_file = log_file_of(argv)
        if log_file is not None and not logs_to(log_file):  # the stage failed before it set up logging
            from glode.io import setup_logging

            setup_logging(log_file)
        elif not logging.getLogger().handlers:
            logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        log = logging.getLogger("glode")
        if expected and not verbose:
            log.error("%s (rerun with --verbose for the traceback)", err)
        else:
            log.error("%s%s: %s", "" if expected else "unexpected error: ", type(err).__name__, err, exc_info=err)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
