"""The paper's Figures 3 and 4 as PNG (`glode figures`).

Figure 3 (pseudo-label quality): the entity-level F1 of the target train split's pseudo labels
against the hidden gold, per target epoch, for three denoising strategies: *global* (variant
`wo_denoising_local`), *local* (`wo_denoising_global`) and *global&local* (`glode`). Inputs are
`glode label-quality` JSONs placed by their paths,
`.../label_quality/{dataset}/{lang}/{variant}/seed{seed}/epoch{e}.json`; the initial labels'
`.../label_quality/{dataset}/{lang}/{system}/seed{seed}/initial.json` (system `source-mlm` by
default, the initial labels of all three variants) is the point "init" before the first epoch.
Epoch file e is plotted as epoch e + 1 (the labels after the (e+1)-th epoch). Mean over seeds,
with a band of one sample standard deviation where there are several.

Figure 4 (entity-type distributions, the paper's Figures 4-5): per target, the percentage of each
entity type among the source gold entities, the target gold entities and the entities the source
model predicts on the target test split, without (Plain) and with (Aux) the MLM task on target
text; the predictions come from `predicted_type_distribution` of the source-plain / source-mlm
metrics.json (mean over seeds). The target train split is unlabeled, so the target gold is read
from the files given (the test split: the one the predictions are made on). Unlike the paper we
draw straight segments between the types, not interpolated curves.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from glode import paper_results as paper
from glode.conll import bio_entities
from glode.data import DEFAULT_ENTITY_TYPES, load_sentences
from glode.io import GlodeInputError, atomic_path, read_parquet_metadata, setup_logging
from glode.tables import parse_metrics_path, read_json_file, seqeval_f1

log = logging.getLogger(__name__)

DPI = 150
# Figure 3's strategies: (variant, legend label), in the paper's legend order.
STRATEGIES = [("wo_denoising_local", "global"), ("wo_denoising_global", "local"), ("glode", "global&local")]
STRATEGY_COLORS = {
    "wo_denoising_local": "tab:blue",
    "wo_denoising_global": "tab:green",
    "glode": "tab:red",
    "wo_denoising": "tab:gray",
    "glode_authors": "tab:purple",
    "wo_denoising_authors": "tab:brown",
}
# Other variants (ablations, user variants) take these in order of their names: matplotlib's own
# cycle would start again at blue and red, and give an ablation the colour of another curve.
SPARE_COLORS = ["tab:orange", "tab:olive", "tab:cyan", "tab:pink", "black", "gold", "navy", "lime"]


def variant_colors(variants) -> dict[str, str]:
    """A colour per variant: the fixed ones above, then the spares in turn (distinct up to eight others)."""
    spare = itertools.cycle(SPARE_COLORS)
    return {v: STRATEGY_COLORS[v] if v in STRATEGY_COLORS else next(spare) for v in sorted(set(variants))}

# Figure 4's colours follow the paper: source blue, target green, prediction orange.
SOURCE_COLOR, TARGET_COLOR, PREDICTION_COLOR = "tab:blue", "tab:green", "tab:orange"
MODEL_KINDS = [("source-plain", "Plain"), ("source-mlm", "Aux")]
DATASET_NAMES = {"conll": "CoNLL", "wikiann": "WikiAnn"}
INITIAL_EPOCH = -1
INITIAL_SYSTEMS = ("source-plain", "source-mlm")
EPOCH_FILE = re.compile(r"epoch(\d+)\.json")
SEED_DIR = re.compile(r"seed(\d+)")
NAME = re.compile(r"[A-Za-z0-9_-]+")


def target_order(targets: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The paper's order (CoNLL de es nl, WikiAnn ar hi zh), then any other target by name."""
    known = [(d, t) for d in ("conll", "wikiann") for t in paper.TARGETS[d]]
    targets = set(targets)
    return [p for p in known if p in targets] + sorted(targets - set(known))


def panel_title(dataset: str, lang: str) -> str:
    return f"{lang.capitalize()} ({DATASET_NAMES.get(dataset, dataset)})"


def grid(n_panels: int, max_cols: int) -> tuple[int, int]:
    cols = max(1, min(max_cols, n_panels))
    return math.ceil(n_panels / cols), cols


def save_png(fig: Figure, path: Path) -> None:
    """Written to a temporary file and renamed into place (glode.io.atomic_path)."""
    FigureCanvasAgg(fig)  # render with Agg whatever backend the process has selected
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")


# --------------------------------------------------------------------------------------------
# Figure 3


@dataclass(frozen=True)
class QualityRecord:
    path: Path
    dataset: str
    lang: str
    name: str  # a variant (epoch files) or a source system (initial.json)
    seed: int
    epoch: int  # INITIAL_EPOCH for initial.json
    f1: float  # percent


def parse_quality_path(path: Path | str) -> tuple[str, str, str, int, int]:
    """(dataset, lang, variant or system, seed, epoch) of a label-quality JSON path."""
    parts = Path(path).parts
    expected = ".../label_quality/{dataset}/{lang}/{variant}/seed{seed}/epoch{e}.json or .../{source-system}/seed{seed}/initial.json"
    if len(parts) < 6 or parts[-6] != "label_quality":
        raise GlodeInputError(path, f"does not follow the results layout: expected {expected}")
    dataset, lang, name, seed_dir, filename = parts[-5:]
    seed = SEED_DIR.fullmatch(seed_dir)
    if not seed or not NAME.fullmatch(name):
        raise GlodeInputError(path, f"does not follow the results layout: expected {expected}")
    if filename == "initial.json":
        if name not in INITIAL_SYSTEMS:
            raise GlodeInputError(path, f"initial.json under {name!r}: expected one of {INITIAL_SYSTEMS}")
        return dataset, lang, name, int(seed.group(1)), INITIAL_EPOCH
    epoch = EPOCH_FILE.fullmatch(filename)
    if not epoch:
        raise GlodeInputError(path, f"file name {filename!r} is neither epoch<N>.json nor initial.json ({expected})")
    return dataset, lang, name, int(seed.group(1)), int(epoch.group(1))


def load_quality(paths: Iterable[Path | str]) -> list[QualityRecord]:
    records, seen = [], {}
    for path in paths:
        key = parse_quality_path(path)
        if key in seen:
            raise GlodeInputError(path, f"the same run and epoch is also given as {seen[key]}")
        seen[key] = path
        records.append(QualityRecord(Path(path), *key, 100.0 * seqeval_f1(read_json_file(path), path)))
    return records


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def quality_curves(records: Sequence[QualityRecord], initial_system: str, strategies: Sequence[tuple[str, str]] = STRATEGIES) -> dict[tuple[str, str], dict[str, list[tuple[int, float, float, int]]]]:
    """{(dataset, lang): {variant: [(epoch, mean, std, n seeds), ...]}} for the variants of
    `strategies`; the initial labels' F1 (epoch -1) starts every curve of a target that has it."""
    by_key: dict[tuple, list[float]] = defaultdict(list)
    for r in records:
        by_key[(r.dataset, r.lang, r.name, r.epoch)].append(r.f1)
    variants = {v for v, _ in strategies}
    targets = {(d, l) for d, l, name, e in by_key if name in variants}
    curves: dict = {}
    for dataset, lang in target_order(targets):
        initial = by_key.get((dataset, lang, initial_system, INITIAL_EPOCH))
        for variant in (v for v, _ in strategies):
            epochs = sorted(e for d, l, name, e in by_key if (d, l, name) == (dataset, lang, variant) and e != INITIAL_EPOCH)
            if not epochs:
                continue
            points = [(INITIAL_EPOCH, *mean_std(initial), len(initial))] if initial else []
            points += [(e, *mean_std(by_key[(dataset, lang, variant, e)]), len(by_key[(dataset, lang, variant, e)])) for e in epochs]
            curves.setdefault((dataset, lang), {})[variant] = points
    ignored = sorted({r.name for r in records if r.name not in variants and r.epoch != INITIAL_EPOCH})
    if ignored:
        log.info("figure 3 plots only %s; ignored variants %s", [v for v, _ in strategies], ignored)
    return curves


def plot_figure3(curves: dict, initial_system: str, strategies: Sequence[tuple[str, str]] = STRATEGIES) -> Figure:
    labels = dict(strategies)
    rows, cols = grid(len(curves), 3)
    fig = Figure(figsize=(4.6 * cols, 3.6 * rows + 0.8), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    colors = variant_colors(v for by_variant in curves.values() for v in by_variant)
    for ax, ((dataset, lang), by_variant) in zip(axes, curves.items()):
        epochs = set()
        for variant, points in by_variant.items():
            x = [e + 1 if e != INITIAL_EPOCH else 0 for e, *_ in points]  # epoch file e = after epoch e+1
            mean = [m for _, m, _, _ in points]
            std = [s for _, _, s, _ in points]
            seeds = max(n for *_, n in points)
            ax.plot(x, mean, marker="o", markersize=4, color=colors[variant], label=f"{labels[variant]} (n={seeds})")
            if seeds > 1:
                ax.fill_between(x, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], color=colors[variant], alpha=0.15, linewidth=0)
            epochs.update(x)
        ax.set_xticks(sorted(epochs), ["init" if e == 0 else str(e) for e in sorted(epochs)])
        ax.set_title(panel_title(dataset, lang))
        ax.set_xlabel("target training epoch")
        ax.set_ylabel("pseudo-label F1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", title="denoising", title_fontsize="small")
    for ax in axes[len(curves):]:
        ax.set_visible(False)
    fig.suptitle(f"Quality of pseudo labels on the target train split (entity-level F1 vs hidden gold; init = {initial_system} labels; mean over seeds)")
    return fig


# --------------------------------------------------------------------------------------------
# Figure 4


@dataclass
class GoldDistribution:
    dataset: str
    lang: str
    splits: list[str]
    counts: Counter

    def percent(self) -> dict[str, float]:
        total = sum(self.counts.values())
        return {t: 100.0 * c / total for t, c in self.counts.items()} if total else {}


def read_gold_distributions(paths: Iterable[Path | str]) -> dict[tuple[str, str], GoldDistribution]:
    """Entity counts per type of labeled sentence files, pooled per (dataset, lang)."""
    gold: dict[tuple[str, str], GoldDistribution] = {}
    for path in paths:
        sentences = load_sentences(path)  # refuses a hidden-gold file
        if "tags" not in sentences.columns:
            raise GlodeInputError(path, "no `tags` column (an unlabeled target train split?): give a labeled split such as test")
        meta = read_parquet_metadata(path)
        parts = Path(path).parts
        dataset = meta.get("dataset") or (parts[-3] if len(parts) >= 3 else None)
        lang = meta.get("lang") or (parts[-2] if len(parts) >= 3 else None)
        if not dataset or not lang:
            raise GlodeInputError(path, "cannot tell dataset and language (no metadata; path is not .../{dataset}/{lang}/{split}.parquet)")
        split = meta.get("split") or Path(path).stem
        entry = gold.setdefault((dataset, lang), GoldDistribution(dataset, lang, [], Counter()))
        entry.splits.append(split)
        for tags in sentences["tags"]:
            entry.counts.update(entity_type for entity_type, _, _ in bio_entities(tags))
        if not entry.counts:
            log.warning("%s: no gold entities", path)
    return gold


def read_predicted_distributions(paths: Iterable[Path | str]) -> dict[tuple[str, str, str], list[dict[str, float]]]:
    """{(dataset, lang, system): [percent per type, one per seed]} of source models' metrics."""
    predicted: dict[tuple[str, str, str], list[dict[str, float]]] = defaultdict(list)
    seen: dict[tuple, Path | str] = {}
    for path in paths:
        dataset, lang, system, seed = parse_metrics_path(path)
        if system not in dict(MODEL_KINDS):
            raise GlodeInputError(path, f"figure 4 compares the source models: system must be source-plain or source-mlm, not {system!r}")
        if (dataset, lang, system, seed) in seen:
            raise GlodeInputError(path, f"the same run is also given as {seen[(dataset, lang, system, seed)]}")
        seen[(dataset, lang, system, seed)] = path
        distribution = read_json_file(path).get("predicted_type_distribution")
        if not isinstance(distribution, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in distribution.values()
        ):
            raise GlodeInputError(path, "no predicted_type_distribution ({type: fraction}) in this metrics.json")
        predicted[(dataset, lang, system)].append({t: 100.0 * v for t, v in distribution.items()})
    return dict(predicted)


def type_order(dataset: str, *distributions: dict[str, float]) -> list[str]:
    """The dataset's label order (PER LOC ORG MISC), then any other type seen, by name."""
    seen = {t for d in distributions for t in d}
    known = list(DEFAULT_ENTITY_TYPES.get(dataset, []))
    return known + sorted(seen - set(known))


def mean_distribution(per_seed: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean over seeds of the percentages; a type a seed never predicts counts as 0 there."""
    types = {t for d in per_seed for t in d}
    return {t: statistics.fmean(d.get(t, 0.0) for d in per_seed) for t in types}


def plot_figure4(predicted: dict, source_gold: dict, target_gold: dict) -> Figure:
    targets = target_order({(d, l) for d, l, _ in predicted} | set(target_gold))
    rows, cols = grid(2 * len(targets), 4)
    fig = Figure(figsize=(3.6 * cols, 3.2 * rows + 1.0), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for i, (dataset, lang) in enumerate(targets):
        sources = [g for (d, _), g in source_gold.items() if d == dataset]
        source = sources[0] if sources else None
        target = target_gold.get((dataset, lang))
        for j, (system, kind) in enumerate(MODEL_KINDS):
            ax = axes[2 * i + j]
            per_seed = predicted.get((dataset, lang, system), [])
            prediction = mean_distribution(per_seed) if per_seed else {}
            lines = []
            if source is not None:
                lines.append(("source", f"source gold ({source.lang} {'+'.join(source.splits)})", SOURCE_COLOR, source.percent()))
            if target is not None:
                lines.append(("target", f"target gold ({'+'.join(target.splits)})", TARGET_COLOR, target.percent()))
            if per_seed:
                lines.append(("prediction", f"{kind} model's predictions (target test)", PREDICTION_COLOR, prediction))
            types = type_order(dataset, *(d for *_, d in lines))
            for _, label, color, distribution in lines:
                ax.plot(types, [distribution.get(t, 0.0) for t in types], marker="o", color=color, label=label)
            note = f"n={len(per_seed)} seed{'s' if len(per_seed) != 1 else ''}" if per_seed else "no predictions"
            ax.set_title(f"{lang.capitalize()}-{kind} ({DATASET_NAMES.get(dataset, dataset)}, {note})")
            ax.set_xlabel("entity type")
            ax.set_ylabel("entities (%)")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            # Below the axes: inside, the legend hid the peaks of skewed predicted distributions.
            ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.2))
    for ax in axes[2 * len(targets):]:
        ax.set_visible(False)
    fig.suptitle("Distribution of entity types: source gold (blue), target gold (green), source model's predictions on the target (orange)\n"
                 "Plain: source model trained on source data only; Aux: with the MLM task on target text")
    return fig


# --------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glode figures", description=__doc__.splitlines()[0])
    parser.add_argument("--figure", type=int, choices=(3, 4), required=True, help="the paper's figure to draw")
    parser.add_argument("--quality", nargs="+", type=Path, help="figure 3: label-quality JSONs (epoch<N>.json and initial.json)")
    parser.add_argument("--initial-system", choices=INITIAL_SYSTEMS, default="source-mlm", help="figure 3: whose initial labels start the curves (default: source-mlm, as for glode and its denoising ablations)")
    parser.add_argument("--metrics", nargs="+", type=Path, help="figure 4: source-plain and source-mlm metrics.json files")
    parser.add_argument("--source-sentences", nargs="+", type=Path, help="figure 4: labeled source sentence Parquet files (e.g. .../conll/en/train.parquet)")
    parser.add_argument("--target-sentences", nargs="+", type=Path, help="figure 4: labeled target sentence Parquet files (the test split)")
    parser.add_argument("--out", required=True, type=Path, help="PNG to write")
    parser.add_argument("--log", type=Path, help="also log to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log)
    if args.figure == 3:
        if not args.quality:
            parser.error("--figure 3 needs --quality")
        curves = quality_curves(load_quality(args.quality), args.initial_system)
        if not curves:
            parser.error(f"--quality has no epoch files of the variants {[v for v, _ in STRATEGIES]}")
        fig = plot_figure3(curves, args.initial_system)
        panels = len(curves)
    else:
        if not args.metrics:
            parser.error("--figure 4 needs --metrics")
        predicted = read_predicted_distributions(args.metrics)
        source_gold = read_gold_distributions(args.source_sentences or [])
        target_gold = read_gold_distributions(args.target_sentences or [])
        fig = plot_figure4(predicted, source_gold, target_gold)
        panels = len({(d, l) for d, l, _ in predicted} | set(target_gold))
    save_png(fig, args.out)
    log.info("figure %d: %d target panel(s) -> %s", args.figure, panels, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
