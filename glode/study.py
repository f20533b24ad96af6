"""A study's scores and label-quality curves as small CSV files (`glode study`).

Two steps, because `results/` is a cache that does not outlive its machine while a study runs
over several machines and sessions:

- `glode study collect` (a Snakemake job per seed, or per seed and target) turns one seed's
  metrics.json and label-quality JSONs into two CSV files, and with `--compare A=B` runs the
  paired bootstrap of F1(A) - F1(B) on each target from the predictions.conll beside the two
  metrics.json files (glode.significance) into a third, bootstrap.csv: one row per comparison,
  target and seed, with its 1,000 resampled differences;
- `glode study report --into docs/study` merges such CSV files into the committed ones (a row of
  the same system, seed and epoch is replaced, every other row kept), then redraws the study's
  Figure 3 (mean +- std over seeds), a per-seed figure of each run's pseudo-label F1 gain over
  its own initial labels (figure3_per_seed.png: seeds whose initial labels differ by more than
  the gain are hidden by Figure 3's bands), and writes the mean +- std per system as Markdown;
  merged bootstrap rows give significance.csv (each target over its seeds, and all targets
  pooled), whose verdicts summary.md lists.

`glode study render` writes a committed study directory as files for the HTML report of
`make demo` (the score and significance tables as CSV, the figures).

`glode study diagnose` prints, for one target run, what the denoiser did per epoch: labels changed
and to which class, which decision levels gave the updated spans a direction (and whether global
and local agreed), the global and local thresholds per class (Eq. 7; inf = a class no span is
labelled with), entity spans per class, and each class's pseudo-label F1 against the hidden gold;
with `--gold` (the split's gold sentences), also every span whose label the run changed (first
epoch's labels against the last's), by old and new class, and how many of the old and of the new
labels are the span's gold class (a gold entity's type, else O), and per epoch what the soft
targets pass on (soft_target_rows: class mass, p_O on gold-O spans, p(gold class) on entities).
With `--train-logs` (the run's epoch<N>/train_log.jsonl files), also the target loss of Eq. 4 over
each epoch, in tenths: labels are refined batch by batch inside an epoch (from epoch 2 on), so a
run whose labels and model pull each other away shows it there as a loss that climbs.

scores.csv: `dataset,lang,system,seed,f1,precision,recall`, seqeval micro scores x100 on the full
test file. label_quality.csv: `dataset,lang,variant,seed,epoch,f1,changed`, pseudo-label F1 x100
against the hidden train gold; epoch 0 is the variant's initial labels (changed 0), epoch e >= 1
the labels after the e-th target epoch with the span labels whose argmax changed in that epoch.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from glode.figures import INITIAL_EPOCH, QualityRecord, parse_quality_path, plot_figure3, quality_curves, save_png
from glode.health import LOSS_PARTS, loss_part_means
from glode.io import GlodeInputError, atomic_path, setup_logging
from glode.tables import parse_metrics_path, read_json_file

log = logging.getLogger(__name__)

SCORE_COLUMNS = ["dataset", "lang", "system", "seed", "f1", "precision", "recall"]
SCORE_KEY = ["dataset", "lang", "system", "seed"]
QUALITY_COLUMNS = ["dataset", "lang", "variant", "seed", "epoch", "f1", "changed"]
QUALITY_KEY = ["dataset", "lang", "variant", "seed", "epoch"]
# The study's Figure 3 compares training on the refined labels with training on the initial ones;
# other study variants are drawn too, under their own names.
VARIANT_LABELS = {"wo_denoising": "w/o denoising", "glode": "GLoDe (global&local)"}
SEED_LINESTYLES = ["-", "--", ":", "-."]
FIGURE_COLUMNS = 3  # panels per row of the per-seed figure (six targets: two rows)
SYSTEM_ORDER = ["source-tokencls", "source-plain", "source-mlm", "target-wo_denoising", "target-glode", "target-wo_denoising_authors", "target-glode_authors"]
# The orderings the study checks on each target's mean F1 (issue 20's expected outcome).
ORDERINGS = (("target-glode", "target-wo_denoising", "source-plain"), ("target-glode", "source-tokencls"),
             ("target-glode_authors", "target-wo_denoising_authors", "source-plain"), ("target-glode_authors", "target-glode"))


def percent(obj: dict, key: str, path: Path) -> float:
    try:
        return round(100.0 * float(obj["seqeval"][key]), 4)
    except (KeyError, TypeError, ValueError) as err:
        raise GlodeInputError(path, f"no seqeval {key}: {err!r}") from err


def score_rows(metrics_paths: Iterable[Path]) -> pd.DataFrame:
    rows = []
    for path in metrics_paths:
        dataset, lang, system, seed = parse_metrics_path(path)
        obj = read_json_file(path)
        rows.append([dataset, lang, system, seed, *(percent(obj, k, path) for k in ("f1", "precision", "recall"))])
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def variant_initial(pair: str) -> tuple[str, str]:
    """A `glode=source-mlm` pair: which system's initial labels start a variant's curve."""
    variant, sep, system = pair.partition("=")
    if not sep or not variant or not system:
        raise argparse.ArgumentTypeError(f"expected VARIANT=SYSTEM, got {pair!r}")
    return variant, system


def system_pair(pair: str) -> tuple[str, str]:
    """`target-glode=target-wo_denoising`: a comparison, A then B."""
    a, sep, b = pair.partition("=")
    if not sep or not a or not b or a == b:
        raise argparse.ArgumentTypeError(f"expected SYSTEM_A=SYSTEM_B of two systems, got {pair!r}")
    return a, b


def quality_rows(quality_paths: Iterable[Path], initial_of: dict[str, str]) -> pd.DataFrame:
    """One row per variant and epoch; an initial.json gives epoch 0 of every variant it starts."""
    rows = []
    for path in quality_paths:
        dataset, lang, name, seed, epoch = parse_quality_path(path)
        obj = read_json_file(path)
        f1 = percent(obj, "f1", path)
        if epoch == INITIAL_EPOCH:
            started = [variant for variant, system in initial_of.items() if system == name]
            if not started:
                raise GlodeInputError(path, f"initial labels of {name}, but no --initial VARIANT={name} says which variant they start")
            rows += [[dataset, lang, variant, seed, 0, f1, 0] for variant in started]
        else:
            changed = obj.get("labels_changed")
            if changed is None:
                raise GlodeInputError(path, "no labels_changed (made by a glode label-quality older than the study tables; rerun it)")
            rows.append([dataset, lang, name, seed, epoch + 1, f1, int(changed)])
    return pd.DataFrame(rows, columns=QUALITY_COLUMNS)


def sort_rows(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    return frame.sort_values(key, kind="stable").reset_index(drop=True)


def write_csv(frame: pd.DataFrame, path: Path, float_format: str = "%.2f") -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format=float_format, lineterminator="\n")


def read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise GlodeInputError(path, f"cannot read as CSV: {err}") from err
    if list(frame.columns) != columns:
        raise GlodeInputError(path, f"header {list(frame.columns)}, expected {columns}")
    return frame


def concat_rows(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The frames' rows, one after another (the first frame, if all are empty)."""
    # an empty frame has object columns, and concatenating one would turn the floats into
    # objects that to_csv writes unformatted (63.0 for 63.00): every score row would churn
    kept = [f for f in frames if len(f)] or list(frames[:1])
    return pd.concat(kept, ignore_index=True)


def upsert(existing: pd.DataFrame, new: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """`existing` with the rows of `new` replacing those with the same key."""
    merged = concat_rows([existing, new]).drop_duplicates(subset=key, keep="last")
    return sort_rows(merged, key)


def summary_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean +- sample std (and n seeds) of F1: a row per system, a column per target."""
    targets = sorted({(d, l) for d, l in zip(scores["dataset"], scores["lang"])})
    systems = [s for s in SYSTEM_ORDER if s in set(scores["system"])] + sorted(set(scores["system"]) - set(SYSTEM_ORDER))
    rows = []
    for system in systems:
        cells = []
        for d, l in targets:
            f1 = scores[(scores["dataset"] == d) & (scores["lang"] == l) & (scores["system"] == system)]["f1"].tolist()
            std = statistics.stdev(f1) if len(f1) > 1 else 0.0
            cells.append(f"{statistics.fmean(f1):.2f} ± {std:.2f} (n={len(f1)})" if f1 else "")
        rows.append([system, *cells])
    return pd.DataFrame(rows, columns=["system", *(f"{d}/{l}" for d, l in targets)])


def summary_markdown(scores: pd.DataFrame) -> str:
    """summary_table as Markdown."""
    table = summary_table(scores)
    lines = ["| " + " | ".join(table.columns) + " |", "|---|" + "---:|" * (len(table.columns) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def ordering_markdown(scores: pd.DataFrame, orderings=ORDERINGS) -> str:
    """Per target, whether each ordering holds on the mean F1 over seeds (each system strictly
    above the next), and on how many targets it holds; orderings with a system never scored are
    left out."""
    present = set(scores["system"])
    orderings = [chain for chain in orderings if set(chain) <= present]
    if not orderings:
        return ""
    means = scores.groupby(["dataset", "lang", "system"])["f1"].mean()
    targets = sorted({(d, l) for d, l in zip(scores["dataset"], scores["lang"])})
    lines = ["| target | " + " | ".join(" > ".join(chain) for chain in orderings) + " |", "|---|" + "---|" * len(orderings)]
    held = [0] * len(orderings)
    for d, l in targets:
        cells = []
        for i, chain in enumerate(orderings):
            values = [means.get((d, l, system)) for system in chain]
            if any(v is None for v in values):
                cells.append("-")
                continue
            holds = all(a > b for a, b in zip(values, values[1:]))
            held[i] += holds
            cells.append(("yes" if holds else "no") + " (" + " / ".join(f"{v:.2f}" for v in values) + ")")
        lines.append(f"| {d}/{l} | " + " | ".join(cells) + " |")
    lines.append("| holds on | " + " | ".join(f"{n} of {len(targets)}" for n in held) + " |")
    return "\n".join(lines) + "\n"


def quality_records(quality: pd.DataFrame) -> list[QualityRecord]:
    """CSV rows as Figure 3's records: epoch 0 is each variant's own initial point."""
    records = []
    for row in quality.itertuples(index=False):
        epoch = INITIAL_EPOCH if row.epoch == 0 else int(row.epoch) - 1
        name = f"initial-{row.variant}" if row.epoch == 0 else row.variant
        records.append(QualityRecord(Path("label_quality.csv"), row.dataset, row.lang, name, int(row.seed), epoch, float(row.f1)))
    return records


def study_figure(quality: pd.DataFrame, out: Path) -> None:
    records = quality_records(quality)
    present = set(quality["variant"])
    variants = [v for v in VARIANT_LABELS if v in present] + sorted(present - set(VARIANT_LABELS))
    strategies = [(v, VARIANT_LABELS.get(v, v)) for v in variants]
    curves: dict = {}
    for variant in variants:  # each variant's curve starts at its own initial labels
        part = [r for r in records if r.name in (variant, f"initial-{variant}")]
        for target, by_variant in quality_curves(part, f"initial-{variant}", strategies).items():
            curves.setdefault(target, {}).update(by_variant)
    save_png(plot_figure3(curves, "the variant's initial", strategies), out)


def seed_gains(quality: pd.DataFrame) -> pd.DataFrame:
    """label_quality rows with `gain`: F1 minus the same run's epoch-0 F1 (runs without an epoch 0
    are left out: they have nothing to gain over)."""
    run = ["dataset", "lang", "variant", "seed"]
    initial = quality.loc[quality["epoch"] == 0, [*run, "f1"]].rename(columns={"f1": "initial"})
    merged = quality.merge(initial, on=run, how="inner")
    return sort_rows(merged.assign(gain=merged["f1"] - merged["initial"]).drop(columns="initial"), QUALITY_KEY)


def per_seed_gain_figure(quality: pd.DataFrame, out: Path) -> None:
    """One panel per target: seed_gains per epoch, one line per variant and seed."""
    from matplotlib.figure import Figure

    from glode.figures import panel_title, variant_colors

    gains = seed_gains(quality)
    colors = variant_colors(gains["variant"])
    targets = sorted({(d, lang) for d, lang in zip(gains["dataset"], gains["lang"])})
    columns = min(max(len(targets), 1), FIGURE_COLUMNS)
    rows = -(-max(len(targets), 1) // columns)
    fig = Figure(figsize=(4.6 * columns, 3.8 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[len(targets):]:
        ax.set_visible(False)
    for ax, (dataset, lang) in zip(axes, targets):
        part = gains[(gains["dataset"] == dataset) & (gains["lang"] == lang)]
        seeds = sorted(set(part["seed"]))
        for (variant, seed), run in part.groupby(["variant", "seed"]):
            ax.plot(run["epoch"], run["gain"], marker="o", markersize=3, color=colors[variant], alpha=0.8,
                    linestyle=SEED_LINESTYLES[seeds.index(seed) % len(SEED_LINESTYLES)], label=f"{VARIANT_LABELS.get(variant, variant)}, seed {seed}")
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_title(panel_title(dataset, lang))
        ax.set_xlabel("target training epoch (0 = initial labels)")
        ax.set_ylabel("pseudo-label F1 - initial (points)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.suptitle("Pseudo-label F1 gain over each run's initial labels, per seed")
    save_png(fig, out)


def bootstrap_rows(metrics_paths: Sequence[Path], comparisons: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """The paired bootstrap of each comparison (system A=B) on each target and seed where both
    were scored, from the predictions.conll beside each metrics.json (glode.significance)."""
    from glode.significance import BOOTSTRAP_COLUMNS, BOOTSTRAP_KEY, bootstrap_row

    runs = {parse_metrics_path(p): Path(p).parent / "predictions.conll" for p in metrics_paths}
    rows = []
    for (dataset, lang, system, seed), path_a in sorted(runs.items()):
        for system_a, system_b in comparisons:
            path_b = runs.get((dataset, lang, system_b, seed))
            if system == system_a and path_b is not None:
                rows.append(bootstrap_row(dataset, lang, seed, system_a, path_a, system_b, path_b))
                log.info("%s/%s seed %d: %s - %s = %+.2f F1", dataset, lang, seed, system_a, system_b, rows[-1]["delta"])
    return sort_rows(pd.DataFrame(rows, columns=BOOTSTRAP_COLUMNS), BOOTSTRAP_KEY)


def collect(args: argparse.Namespace) -> None:
    scores = sort_rows(score_rows(args.metrics), SCORE_KEY)
    quality = sort_rows(quality_rows(args.quality, dict(args.initial)), QUALITY_KEY)
    bootstrap = bootstrap_rows(args.metrics, args.compare) if args.bootstrap_out else None
    write_csv(scores, args.scores_out)
    write_csv(quality, args.quality_out)
    if bootstrap is not None:
        write_csv(bootstrap, args.bootstrap_out, float_format="%.4f")
    log.info("%d scores -> %s, %d label-quality rows -> %s", len(scores), args.scores_out, len(quality), args.quality_out)


def significance_markdown(significance: pd.DataFrame) -> str:
    """The significance table with a verdict per row (glode.significance.verdict)."""
    from glode.significance import verdict

    lines = ["| target | A | B | runs | mean A - B (F1) | 95% CI | p | verdict |", "|---|---|---|---:|---:|---|---:|---|"]
    for r in significance.itertuples(index=False):
        target = "all (pooled)" if r.dataset == "all" else f"{r.dataset}/{r.lang}"
        lines.append(f"| {target} | {r.system_a} | {r.system_b} | {r.seeds} | {r.mean_delta:+.2f} | [{r.ci_low:+.2f}, {r.ci_high:+.2f}] | {r.p_value:.3f} | A {verdict(r.mean_delta, r.p_value)} |")
    return "\n".join(lines) + "\n"


def merge_csv(target: Path, columns: list[str], key: list[str], new_paths: Sequence[Path]) -> pd.DataFrame:
    """The committed rows of `target` (if any) with those of `new_paths` upserted."""
    frames = [read_csv(target, columns)] if target.exists() else []
    frames += [read_csv(p, columns) for p in new_paths]
    if len(frames) > 1:
        return upsert(frames[0], concat_rows(frames[1:]), key)
    return frames[0] if frames else pd.DataFrame(columns=columns)


def report(args: argparse.Namespace) -> None:
    into: Path = args.into
    into.mkdir(parents=True, exist_ok=True)
    from glode.significance import BOOTSTRAP_COLUMNS, BOOTSTRAP_KEY, significance_table

    merged = {}
    for name, columns, key, new_paths in (("scores.csv", SCORE_COLUMNS, SCORE_KEY, args.scores), ("label_quality.csv", QUALITY_COLUMNS, QUALITY_KEY, args.label_quality)):
        merged[name] = merge_csv(into / name, columns, key, new_paths)
    # everything is merged and checked before anything is written: a refused mix (seeds of
    # different test files) leaves the committed files as they were
    bootstrap = merge_csv(into / "bootstrap.csv", BOOTSTRAP_COLUMNS, BOOTSTRAP_KEY, args.bootstrap)
    significance = significance_table(bootstrap, into / "bootstrap.csv") if len(bootstrap) else None
    for name, frame in merged.items():
        write_csv(frame, into / name)
        log.info("%s: %d rows", into / name, len(frame))
    if args.bootstrap:
        write_csv(bootstrap, into / "bootstrap.csv", float_format="%.4f")
    if significance is not None:
        write_csv(significance, into / "significance.csv", float_format="%.4f")
    if len(merged["label_quality.csv"]):
        study_figure(merged["label_quality.csv"], into / "figure3.png")
        per_seed_gain_figure(merged["label_quality.csv"], into / "figure3_per_seed.png")
    text = summary_markdown(merged["scores.csv"])
    orderings = ordering_markdown(merged["scores.csv"])
    if orderings:
        text += "\nOrderings on the mean F1 over seeds (mean F1 in brackets, in the order named):\n\n" + orderings
    if significance is not None:
        text += "\nPaired bootstrap over test sentences (glode.significance; 1,000 resamples per run, seeds combined on the same resamples):\n\n" + significance_markdown(significance)
    with atomic_path(into / "summary.md") as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(text, end="")


def render(args: argparse.Namespace) -> None:
    """A committed study directory as files an HTML report shows: the score table, the
    significance table with its verdicts, and the figures, each named with the study's scale."""
    from glode.significance import SIGNIFICANCE_COLUMNS, verdict

    study_dir, out = args.study, args.out_dir
    scores = read_csv(study_dir / "scores.csv", SCORE_COLUMNS)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(summary_table(scores), out / "study_scores.csv")
    significance_path = study_dir / "significance.csv"
    if significance_path.exists():
        table = read_csv(significance_path, SIGNIFICANCE_COLUMNS)
        table["verdict"] = [f"A {verdict(d, p)}" for d, p in zip(table["mean_delta"], table["p_value"])]
        write_csv(table, out / "study_significance.csv", float_format="%.4f")
    else:  # a study collected before the significance tests: say so in the report, not a blank
        write_csv(pd.DataFrame({"note": [f"{significance_path} does not exist yet"]}), out / "study_significance.csv")
    for name in ("figure3.png", "figure3_per_seed.png"):
        with atomic_path(out / f"study_{name}") as tmp:
            tmp.write_bytes((study_dir / name).read_bytes())
    log.info("%s -> %s", study_dir, out)


def class_cells(values, classes: Sequence[str], fmt: str) -> str:
    if values is None:
        return "-"
    items = values.items() if isinstance(values, dict) else zip(classes, values)
    return " ".join(f"{c} {fmt.format(v) if v is not None and v != float('inf') else 'inf'}" for c, v in items)


def diagnosis_rows(labels_paths: Sequence[Path], quality_paths: Sequence[Path] | None) -> list[str]:
    """One Markdown row per epoch of a target run (labels Parquet + its label-quality JSON; without
    quality files, as for raw text, which has no gold to make them, the F1 column is '-')."""
    from glode.io import read_parquet_metadata

    rows = ["| epoch | changed (to) | directions: global only / local only / both (same) | global thresholds | local thresholds | entity spans (argmax) | pseudo-label F1 per type |",
            "|---|---|---|---|---|---|---|"]
    for labels_path, quality_path in zip(labels_paths, quality_paths or [None] * len(labels_paths)):
        meta = read_parquet_metadata(labels_path)
        classes = meta["classes"]
        end = meta.get("denoise_end_epoch") or {}
        argmax = pd.read_parquet(labels_path, columns=["label"])["label"].value_counts()
        spans = {c: int(argmax.get(c, 0)) for c in classes[1:]}
        per_type = read_json_file(quality_path).get("per_type", {}) if quality_path is not None else {}
        f1 = {c: 100 * per_type[c]["f1"] for c in classes[1:] if c in per_type} or None
        changed = f"{meta.get('labels_changed', 0)} ({class_cells({c: n for c, n in (meta.get('changed_to') or {}).items() if n}, classes, '{}')})"
        d = meta.get("directions")  # absent in labels written before glode recorded it
        directions = f"{d['global_only']} / {d['local_only']} / {d['both']} ({d['both_agree']})" if d else "-"
        rows.append(f"| {meta['epoch']} | {changed} | {directions} | {class_cells(end.get('global_thresholds'), classes, '{:.3f}')} | "
                    f"{class_cells(end.get('local_thresholds'), classes, '{:.3f}')} | {class_cells(spans, classes, '{}')} | {class_cells(f1, classes, '{:.1f}')} |")
    return rows


def gold_span_classes(gold_sentences: pd.DataFrame) -> dict[tuple[int, int, int], str]:
    """(sent_id, first word, last word) -> entity type of every gold entity (seqeval's spans)."""
    from seqeval.metrics.sequence_labeling import get_entities

    return {(int(s), b, e): t for s, tags in zip(gold_sentences["sent_id"], gold_sentences["tags"]) for t, b, e in get_entities(list(tags))}


def read_gold_span_classes(gold: Path) -> dict[tuple[int, int, int], str]:
    return gold_span_classes(pd.read_parquet(gold, columns=["sent_id", "tags"]))


def change_rows(first_labels: Path, last_labels: Path, gold_entities: dict[tuple[int, int, int], str]) -> list[str]:
    """The spans whose argmax differs between two label files of one run, by (old -> new class),
    with how many old and new labels equal the span's gold class; Markdown rows, most first."""
    key = ["sent_id", "start", "end"]
    first = pd.read_parquet(first_labels, columns=[*key, "label"])
    last = pd.read_parquet(last_labels, columns=[*key, "label"])
    if not first[key].equals(last[key]):
        raise GlodeInputError(last_labels, f"its spans differ from those of {first_labels}: not the same run")
    changed = first.loc[first["label"].to_numpy() != last["label"].to_numpy(), key].assign(old=first["label"], new=last["label"])
    changed["gold"] = [gold_entities.get((int(s), int(b), int(e)), "O") for s, b, e in zip(changed["sent_id"], changed["start"], changed["end"])]
    rows = ["| change | spans | old label right | new label right |", "|---|---:|---:|---:|"]
    tally = changed.assign(old_right=changed["old"] == changed["gold"], new_right=changed["new"] == changed["gold"])
    groups = tally.groupby(["old", "new"]).agg(spans=("gold", "size"), old_right=("old_right", "sum"), new_right=("new_right", "sum"))
    for (old, new), row in groups.sort_values("spans", ascending=False).iterrows():
        rows.append(f"| {old} -> {new} | {row.spans} | {row.old_right} | {row.new_right} |")
    rows.append(f"| all | {len(tally)} | {int(tally['old_right'].sum())} | {int(tally['new_right'].sum())} |")
    return rows


def mean_cell(values) -> str:
    return f"{float(np.mean(values)):.3f}" if len(values) else "-"


SOFT_O_THRESHOLD = 0.9  # a gold-O span below this p_O passes visible entity mass to the model


def soft_target_rows(labels_paths: Sequence[Path], gold_entities: dict[tuple[int, int, int], str], gold: Path) -> list[str]:
    """What the soft targets pass on, per epoch: Eq. 4 trains on each span's class distribution,
    not on its argmax, so a denoiser can move much probability mass while changing few argmaxes.

    Per label file: the total probability mass of each class over all spans; on spans that are
    no gold entity, the mean p_O and the share with p_O below SOFT_O_THRESHOLD; on gold entity
    spans, the mean probability of their gold class. Markdown rows, one per file. `gold` (the
    file gold_entities came from) only names the file in errors."""
    from glode.io import read_parquet_metadata

    rows = ["| epoch | probability mass per class | gold-O spans: mean p_O | gold-O spans: p_O < "
            f"{SOFT_O_THRESHOLD} | gold entity spans: mean p(gold class) |", "|---|---|---:|---:|---:|"]
    first_keys = None
    for labels_path in labels_paths:
        meta = read_parquet_metadata(labels_path)
        classes = meta["classes"]
        labels = pd.read_parquet(labels_path, columns=["sent_id", "start", "end", *(f"p_{c}" for c in classes)])
        keys = labels[["sent_id", "start", "end"]]
        if first_keys is None:  # the spans (and so their gold classes) are the same in every file
            first_keys = keys
            column = {c: i for i, c in enumerate(classes)}
            span_gold = [gold_entities.get((int(s), int(b), int(e)), "O") for s, b, e in keys.itertuples(index=False)]
            unknown = sorted({c for c in span_gold if c not in column})
            if unknown:
                raise GlodeInputError(gold, f"has entity types {unknown} that {labels_path} has no class for")
            gold_column = np.array([column[c] for c in span_gold], dtype=np.int64)
            gold_o = gold_column == column["O"]
        elif not first_keys.equals(keys) or list(column) != classes:
            raise GlodeInputError(labels_path, f"its spans differ from those of {labels_paths[0]}: not the same run")
        probs = labels[[f"p_{c}" for c in classes]].to_numpy(dtype=float)
        p_gold = probs[np.arange(len(probs)), gold_column]
        p_o = probs[gold_o, column["O"]]
        mass = dict(zip(classes, probs.sum(axis=0)))
        below = f"{100 * (p_o < SOFT_O_THRESHOLD).mean():.1f}%" if len(p_o) else "-"
        rows.append(f"| {meta.get('epoch', '-')} | {class_cells(mass, classes, '{:,.0f}')} | {mean_cell(p_o)} | {below} | {mean_cell(p_gold[~gold_o])} |")
    return rows


LOSS_TRAJECTORY_PARTS = LOSS_PARTS


def health_rows(labels_paths: Sequence[Path]) -> list[str]:
    """The run-health check each epoch recorded in its labels' metadata (glode.health), a row each."""
    from glode.io import read_parquet_metadata

    def ratio(value):
        return "-" if value is None else f"{value:.2f}x"

    rows = ["| epoch | method | target-loss climb | entity mass (start -> end) | growth | vs initial labels | model's entity predictions / initial entity spans | problems |",
            "|---|---|---:|---|---:|---:|---:|---|"]
    for path in labels_paths:
        meta = read_parquet_metadata(path)
        h = meta.get("health")
        if not h:  # labels written before glode recorded it
            rows.append(f"| {meta.get('epoch')} | {meta.get('method', '-')} | - | - | - | - | - | not recorded |")
            continue
        rows.append(f"| {meta.get('epoch')} | {meta.get('method', '-')} | {ratio(h.get('loss_climb'))} | {h['entity_mass_start']:,.0f} -> {h['entity_mass_end']:,.0f} | "
                    f"{ratio(h.get('entity_mass_growth'))} | {ratio(h.get('entity_mass_vs_initial'))} | {ratio(h.get('predicted_entity_ratio'))} | "
                    f"{'; '.join(h.get('problems') or []) or '-'} |")
    return rows


def loss_trajectory_rows(train_logs: Sequence[Path], parts: int = LOSS_TRAJECTORY_PARTS) -> list[str]:
    """The mean target loss (Eq. 4, `loss_tgt`) over each of `parts` consecutive, near-equal runs
    of steps of every epoch's train_log.jsonl, and the last part's mean over the first's; Markdown
    rows, one per epoch."""
    rows = [f"| epoch | steps | mean target loss, in {parts} parts of the epoch's steps | last / first |", "|---|---:|---|---:|"]
    for path in train_logs:
        losses, epoch = [], "-"
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    losses.append(float(record["loss_tgt"]))
                except (ValueError, KeyError, TypeError) as error:
                    raise GlodeInputError(path, f"not a training step with a loss_tgt ({error})", line=number) from None
                epoch = record.get("epoch", epoch)
        if len(losses) < parts:
            raise GlodeInputError(path, f"{len(losses)} steps, fewer than the {parts} parts to split them in")
        means = loss_part_means(losses, parts)
        ratio = f"{means[-1] / means[0]:.1f}" if means[0] > 0 else "-"
        rows.append(f"| {epoch} | {len(losses)} | {' '.join(f'{m:.3f}' for m in means)} | {ratio} |")
    return rows


def diagnose(args: argparse.Namespace) -> None:
    if args.quality and len(args.labels) != len(args.quality):
        raise ValueError(f"{len(args.labels)} --labels files but {len(args.quality)} --quality files")
    if not args.labels and not args.train_logs:
        raise ValueError("nothing to diagnose: give --labels, --train-logs, or both")
    if args.gold is not None and not args.labels:
        raise ValueError("--gold checks the labels' changes: give --labels too")
    if args.labels:
        print("\n".join(diagnosis_rows(args.labels, args.quality or None)))
        print("\nrun health (glode.health; no gold needed), from the labels' metadata:\n")
        print("\n".join(health_rows(args.labels)))
    if args.gold is not None:
        gold_entities = read_gold_span_classes(args.gold)
        print(f"\nspans whose label changed from {args.labels[0]} to {args.labels[-1]}, checked against {args.gold}:\n")
        print("\n".join(change_rows(args.labels[0], args.labels[-1], gold_entities)))
        print(f"\nsoft targets (what Eq. 4 trains on) of each label file, against {args.gold}:\n")
        print("\n".join(soft_target_rows(args.labels, gold_entities, args.gold)))
    if args.train_logs:
        print("\ntarget loss (Eq. 4) through each epoch, from the training logs:\n")
        print("\n".join(loss_trajectory_rows(args.train_logs)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glode study", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="one seed's metrics.json and label-quality JSONs -> two CSV files")
    c.add_argument("--metrics", nargs="+", type=Path, required=True, help="metrics.json files (results/eval/{dataset}/{lang}/{system}/seed{seed}/)")
    c.add_argument("--quality", nargs="*", type=Path, default=[], help="label-quality JSONs (epoch<N>.json and initial.json); none for scores alone")
    c.add_argument("--initial", nargs="*", default=[], type=variant_initial, metavar="VARIANT=SYSTEM", help="whose initial labels are each variant's epoch 0, e.g. glode=source-mlm (needed with initial.json files)")
    c.add_argument("--scores-out", type=Path, required=True)
    c.add_argument("--quality-out", type=Path, required=True)
    c.add_argument("--compare", nargs="*", default=[], type=system_pair, metavar="SYSTEM_A=SYSTEM_B", help="paired bootstrap of F1(A) - F1(B) per target, e.g. target-glode=target-wo_denoising")
    c.add_argument("--bootstrap-out", type=Path, help="CSV of the comparisons' resampled differences (with --compare)")
    c.add_argument("--log", type=Path, help="also log to this file")
    r = sub.add_parser("report", help="merge collected CSV files into a directory, redraw its figure and summary")
    r.add_argument("--scores", nargs="*", type=Path, default=[], help="scores.csv files to merge in")
    r.add_argument("--label-quality", nargs="*", type=Path, default=[], help="label_quality.csv files to merge in")
    r.add_argument("--bootstrap", nargs="*", type=Path, default=[], help="bootstrap.csv files of `collect --compare` to merge in (significance.csv is recomputed)")
    r.add_argument("--into", type=Path, required=True, help="directory of the committed study files (e.g. docs/study)")
    r.add_argument("--log", type=Path, help="also log to this file")
    v = sub.add_parser("render", help="a committed study directory as report files (tables as CSV, figures)")
    v.add_argument("--study", type=Path, required=True, help="the committed study directory (docs/study)")
    v.add_argument("--out-dir", type=Path, required=True, help="where to write study_scores.csv, study_significance.csv and the figures")
    v.add_argument("--log", type=Path, help="also log to this file")
    d = sub.add_parser("diagnose", help="what the denoiser did per epoch of one target run, as a Markdown table")
    d.add_argument("--labels", nargs="*", type=Path, default=[], help="the run's epoch<N>/labels.parquet files, in epoch order")
    d.add_argument("--quality", nargs="*", type=Path, default=[], help="their label-quality JSONs, in the same order (none for raw text: no gold to make them)")
    d.add_argument("--gold", type=Path, help="the split's gold sentences (Parquet with sent_id and tags): also check the changed labels against it")
    d.add_argument("--train-logs", nargs="*", type=Path, default=[], help="the run's epoch<N>/train_log.jsonl files: also the target loss through each epoch")
    d.add_argument("--log", type=Path, help="also log to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log)
    {"collect": collect, "report": report, "render": render, "diagnose": diagnose}[args.command](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
