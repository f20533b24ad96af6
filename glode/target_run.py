"""`glode train-target-run`: several target epochs, and the test predictions, in one process.

Each epoch is exactly `glode train-target`'s (`train_target_epoch`, whose state is written and
read back between epochs just as between two jobs), so the labels, models and predictions are
byte-identical to one job per epoch followed by `glode pseudo-label`. What changes is the cost:
a process pays its start-up once (Python, torch, transformers, the 250k-piece tokenizer: ~5 s on
a 2-core CPU, more than a demo epoch's training), instead of once per epoch and once more for the
test predictions. The price is resume granularity: a run killed in its third epoch starts again
from its first. The workflow uses it with `target_jobs: run` (the demo); the paper's
configuration keeps one job per epoch (`target_jobs: epoch`).

Layout under --run-dir (the same paths as the per-epoch jobs write): epoch{E}/labels.parquet and
epoch{E}/train_log.jsonl for every epoch of the run; epoch{E}/state only while the next epoch
needs it (the last one is removed once --model-out is written).

`--variant NAME` (the workflow's `{variant}`) is recorded by every epoch and names the final
model on its card; without it, the variant is read from --model-out when it follows the
workflow's layout .../target/{dataset}/{lang}/{variant}/seed{N}/model (glode.train_target.resolve_variant).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
from pathlib import Path

from glode.denoise import DenoiseOptions
from glode.io import atomic_dir, setup_logging
from glode.options import options_from_args
from glode.pseudo_label import PseudoLabelOptions
from glode.train_target import TargetFiles, TargetTrainingOptions, add_input_arguments, parse_target_arguments, train_target_epoch

log = logging.getLogger(__name__)


def train_target_run(files: TargetFiles, first_epoch: int, last_epoch: int, run_dir: Path, opts: TargetTrainingOptions, denoise_options: DenoiseOptions,
                     entity_types: list[str] | None = None, test: tuple[Path, Path, Path] | None = None, predict_options: PseudoLabelOptions | None = None,
                     variant: str | None = None) -> None:
    """Epochs first..last of one target run, then (with `test` = (sentences, spans, out)) the
    final model's predictions on the test split. `variant`: the name every epoch records."""
    if files.model_out is None:
        raise ValueError("--model-out is required: the run's final model")
    for epoch in range(first_epoch, last_epoch + 1):
        out, previous = run_dir / f"epoch{epoch}", run_dir / f"epoch{epoch - 1}"
        chained = {} if epoch == first_epoch else {"labels_in": previous / "labels.parquet", "state_in": previous / "state", "init_model": None}
        step = dataclasses.replace(files, state_out=out / "state", labels_out=out / "labels.parquet", train_log=out / "train_log.jsonl", model_out=None, final_model=files.model_out, **chained)
        train_target_epoch(step, epoch, opts, denoise_options, entity_types, variant=variant)
        if epoch > first_epoch:  # the previous epoch's state has served its purpose
            shutil.rmtree(previous / "state")
    # The final model is the last state's, copied as the per-epoch workflow's `target_model` does,
    # so that every file (the labels' metadata included) is the same in both layouts.
    last_state = run_dir / f"epoch{last_epoch}" / "state"
    with atomic_dir(files.model_out) as tmp:
        shutil.copytree(last_state / "model", tmp, dirs_exist_ok=True)
    shutil.rmtree(last_state)
    if test is not None:
        from glode.pseudo_label import pseudo_label

        sentences, spans, predictions = test
        pseudo_label(files.model_out, sentences, spans, predictions, predict_options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glode train-target-run", description=__doc__.splitlines()[0])
    parser.add_argument("--first-epoch", type=int, default=0, help="the run's first epoch to train (> 0 needs --state-in)")
    parser.add_argument("--last-epoch", type=int, required=True, help="the last epoch to train (usually --num-epochs - 1)")
    parser.add_argument("--run-dir", required=True, type=Path, help="where epoch{E}/labels.parquet and train_log.jsonl go")
    parser.add_argument("--test-sentences", type=Path, help="with --test-spans and --test-predictions-out: predict this split with the final model")
    parser.add_argument("--test-spans", type=Path)
    parser.add_argument("--test-predictions-out", type=Path)
    add_input_arguments(parser)
    prediction = parser.add_argument_group("test prediction options (glode pseudo-label)")
    prediction.add_argument("--predict-batch-size", type=int, default=PseudoLabelOptions.batch_size, help="sentences per prediction batch")
    prediction.add_argument("--predict-precision", default=PseudoLabelOptions.precision, help="auto, bf16 or fp32 (as glode pseudo-label --precision)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_target_arguments(parser, argv)
    setup_logging(args.log)
    test_args = (args.test_sentences, args.test_spans, args.test_predictions_out)
    if any(test_args) and not all(test_args):
        parser.error("--test-sentences, --test-spans and --test-predictions-out go together")
    files = TargetFiles(**{f.name: getattr(args, f.name, None) for f in dataclasses.fields(TargetFiles) if f.name not in ("state_out", "labels_out")},
                        state_out=args.run_dir, labels_out=args.run_dir)  # per-epoch outputs are set by train_target_run
    opts = options_from_args(TargetTrainingOptions, args)
    predict = PseudoLabelOptions(batch_size=args.predict_batch_size, device=opts.device, precision=args.predict_precision)
    train_target_run(files, args.first_epoch, args.last_epoch, args.run_dir, opts, options_from_args(DenoiseOptions, args), args.entity_types,
                     test_args if all(test_args) else None, predict, variant=args.variant)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
