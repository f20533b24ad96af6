"""The paper's Tables 1-4 from our metrics.json files, ours beside the published (`glode tables`).

Every metrics.json is placed by its path, `.../eval/{dataset}/{lang}/{system}/seed{seed}/metrics.json`
(the workflow's results layout), and contributes its `seqeval.f1` (entity-level micro-F1, the
paper's metric). A cell is the mean over the seeds found, with the sample standard deviation
(0 for a single seed) and the number of seeds n; F1 in percent, 2 decimals.

- Table 1 (CoNLL de/es/nl + Avg) and Table 2 (WikiAnn ar/hi/zh + Avg): the field's standard
  zero-shot baseline, a token classifier on the same backbone (`source-tokencls`), our zero-shot
  span model (`source-plain`), the source model with MLM (`source-mlm`) and GLoDe (`target-glode`),
  then the paper's published rows.
- Table 3: every ablation variant (`target-<variant>`) x the six targets, with the difference
  against our full GLoDe (variant - GLoDe; negative = a drop), each beside the paper's row.
- Table 4: language-specific (`target-glode`) vs language-agnostic (`target-agnostic`) features.

A target with no metrics is an empty cell. Avg (Tables 1-2) is the mean of the per-target means
over the targets present in that row, marked `*` when some are missing; its std and n are over
the seeds present for every one of those targets (the per-seed averages).
The published numbers come from `glode.paper_results` and are only ever printed beside ours.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from glode import paper_results as paper
from glode.io import GlodeInputError, atomic_path, setup_logging, write_text

log = logging.getLogger(__name__)

SYSTEM_PATTERN = re.compile(r"source-plain|source-mlm|source-tokencls|target-[A-Za-z0-9_]+")
SEED_PATTERN = re.compile(r"seed(\d+)")

# Our rows of Tables 1-2: (system, row name).
MAIN_ROWS = [
    ("source-tokencls", "Token classifier (source only)"),
    ("source-plain", "Zero-shot (source only)"),
    ("source-mlm", "Source + MLM"),
    ("target-glode", "GLoDe (ours)"),
]
ABLATIONS = ["wo_mlm", "wo_denoising", "wo_denoising_local", "wo_denoising_global", "wo_multiple_directions", "wo_mlm_init"]
# Variants that are not ablations: the full model and Table 4's language-agnostic variant.
NOT_ABLATIONS = {"glode", "agnostic"}

TITLES = {
    1: "Table 1: CoNLL, English -> de/es/nl (entity-level micro-F1, %)",
    2: "Table 2: WikiAnn, English -> ar/hi/zh (entity-level micro-F1, %)",
    3: "Table 3: ablations (entity-level micro-F1, %; in brackets: variant - GLoDe)",
    4: "Table 4: language-specific (MLM) vs language-agnostic (supervised contrastive) features (F1, %)",
}


# --------------------------------------------------------------------------------------------
# reading metrics.json files


@dataclass(frozen=True)
class MetricsRecord:
    """One metrics.json: where it sits in the results tree and its seqeval F1 in percent."""

    path: Path
    dataset: str
    lang: str
    system: str
    seed: int
    f1: float
    unreachable: tuple[int, int] | None = None  # (gold entities no span can reach, gold entities)


def parse_metrics_path(path: Path | str) -> tuple[str, str, str, int]:
    """(dataset, lang, system, seed) of `.../eval/{dataset}/{lang}/{system}/seed{seed}/metrics.json`."""
    parts = Path(path).parts
    expected = "a path .../eval/{dataset}/{lang}/{system}/seed{seed}/metrics.json"
    if len(parts) < 6 or parts[-1] != "metrics.json" or parts[-6] != "eval":
        raise GlodeInputError(path, f"does not follow the results layout: expected {expected}")
    dataset, lang, system, seed_dir = parts[-5:-1]
    if not SYSTEM_PATTERN.fullmatch(system):
        raise GlodeInputError(path, f"unknown system {system!r} (expected source-plain, source-mlm, source-tokencls or target-<variant>) in {expected}")
    seed = SEED_PATTERN.fullmatch(seed_dir)
    if not seed:
        raise GlodeInputError(path, f"{seed_dir!r} is not a seed directory (seed<N>) in {expected}")
    return dataset, lang, system, int(seed.group(1))


def read_json_file(path: Path | str) -> dict:
    """A JSON object, or GlodeInputError naming the file."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GlodeInputError(path, "no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise GlodeInputError(path, f"not valid JSON ({err})") from None
    if not isinstance(obj, dict):
        raise GlodeInputError(path, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def seqeval_f1(obj: dict, path: Path | str) -> float:
    """`seqeval.f1` of a metrics or label-quality JSON, as a fraction in [0, 1]."""
    section = obj.get("seqeval")
    value = section.get("f1") if isinstance(section, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GlodeInputError(path, f"no numeric seqeval.f1 (got {value!r}); is this a file of glode evaluate / label-quality?")
    if not 0.0 <= value <= 1.0:
        raise GlodeInputError(path, f"seqeval.f1 = {value} is not a fraction in [0, 1]")
    return float(value)


def read_metrics(path: Path | str) -> MetricsRecord:
    dataset, lang, system, seed = parse_metrics_path(path)
    obj = read_json_file(path)
    f1 = seqeval_f1(obj, path)
    counts = obj.get("unreachable") or {}
    unreachable = (counts["total"], counts["gold_entities"]) if counts.get("gold_entities") else None
    return MetricsRecord(Path(path), dataset, lang, system, seed, 100.0 * f1, unreachable)


def unreachable_note(records: Sequence[MetricsRecord]) -> str | None:
    """The share of each target's gold test entities that no candidate span can reach (longer
    than max_span_len, or past the encoder window): seqeval counts them as missed, whatever the model."""
    shares = {}
    for r in records:
        if r.unreachable and (r.dataset, r.lang) not in shares:
            shares[(r.dataset, r.lang)] = r.unreachable
    if not shares:
        return None
    parts = [f"{lang} {100.0 * n / total:.1f}% ({n:,} of {total:,})" for (_, lang), (n, total) in sorted(shares.items(), key=lambda kv: kv[0][1])]
    return "Gold test entities that no candidate span can reach, counted as missed: " + ", ".join(parts) + "."


def load_metrics(paths: Iterable[Path | str]) -> list[MetricsRecord]:
    """Every file read and checked before anything is written; a run found twice is an error."""
    records: list[MetricsRecord] = []
    seen: dict[tuple, Path] = {}
    for path in paths:
        record = read_metrics(path)
        key = (record.dataset, record.lang, record.system, record.seed)
        if key in seen:
            raise GlodeInputError(path, f"the same run ({'/'.join(map(str, key))}) is also given as {seen[key]}")
        seen[key] = record.path
        records.append(record)
    return records


# --------------------------------------------------------------------------------------------
# cells and rows


@dataclass
class Cell:
    """Mean over seeds, sample std (0 for one seed), number of seeds; paper cells have no std/n."""

    mean: float | None = None
    std: float | None = None
    n: int | None = None
    seeds: dict[int, float] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.mean is None


def seed_cell(values_by_seed: dict[int, float]) -> Cell:
    """The cell of one (target, system): mean, sample standard deviation and n over seeds."""
    if not values_by_seed:
        return Cell(n=0)
    values = list(values_by_seed.values())
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return Cell(statistics.fmean(values), std, len(values), dict(values_by_seed))


def average_cell(cells: dict[str, Cell]) -> tuple[Cell, list[str]]:
    """Avg over the targets present: the mean of their means; std and n over the seeds that every
    present target has (one average per such seed). Returns the cell and the targets averaged."""
    present = [t for t, c in cells.items() if not c.empty]
    if not present:
        return Cell(n=0), []
    mean = statistics.fmean(cells[t].mean for t in present)
    common = set.intersection(*(set(cells[t].seeds) for t in present))
    if not common:  # published cells carry no seeds
        return Cell(mean), present
    per_seed = [statistics.fmean(cells[t].seeds[s] for t in present) for s in sorted(common)]
    std = statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0
    return Cell(mean, std, len(per_seed)), present


@dataclass
class Row:
    name: str
    source: str  # "ours" or "paper"
    system: str  # our results system (e.g. target-glode), or "" for a published row
    cells: dict[str, Cell]
    deltas: dict[str, float | None] = field(default_factory=dict)
    avg: Cell | None = None
    avg_targets: list[str] = field(default_factory=list)
    note: str = ""


def table_targets(table: int) -> list[tuple[str, str]]:
    """The (dataset, lang) columns of a table, in the paper's order."""
    if table == 1:
        return [("conll", t) for t in paper.TARGETS["conll"]]
    if table == 2:
        return [("wikiann", t) for t in paper.TARGETS["wikiann"]]
    return [(d, t) for d in ("conll", "wikiann") for t in paper.TARGETS[d]]


def our_row(records: Sequence[MetricsRecord], targets: Sequence[tuple[str, str]], system: str, name: str) -> Row:
    cells = {}
    for dataset, lang in targets:
        values = {r.seed: r.f1 for r in records if (r.dataset, r.lang, r.system) == (dataset, lang, system)}
        cells[lang] = seed_cell(values)
    return Row(name, "ours", system, cells)


def paper_row(name: str, values: dict[str, float | None], targets: Sequence[tuple[str, str]], note: str = "") -> Row:
    cells = {lang: Cell(values.get(lang)) for _, lang in targets}
    row = Row(name, "paper", "", cells, note=note)
    if "Avg" in values:
        row.avg, row.avg_targets = Cell(values["Avg"]), [lang for _, lang in targets]
    return row


def add_averages(row: Row) -> Row:
    row.avg, row.avg_targets = average_cell(row.cells)
    return row


def add_deltas(row: Row, reference: Row) -> Row:
    """variant - reference per target (negative: a drop), from the unrounded means."""
    for lang, cell in row.cells.items():
        ref = reference.cells.get(lang)
        row.deltas[lang] = None if cell.empty or ref is None or ref.empty else cell.mean - ref.mean
    return row


def warn_unplaced(records: Sequence[MetricsRecord]) -> None:
    """Records of targets that are not a column of any table are reported, not silently lost."""
    columns = set(table_targets(3))
    for r in records:
        if (r.dataset, r.lang) not in columns:
            log.warning("%s: %s/%s is not a target of the paper's tables; ignored", r.path, r.dataset, r.lang)


def build_rows(table: int, records: Sequence[MetricsRecord]) -> list[Row]:
    targets = table_targets(table)
    if table in (1, 2):
        published = paper.TABLE1_CONLL if table == 1 else paper.TABLE2_WIKIANN
        rows = [add_averages(our_row(records, targets, system, name)) for system, name in MAIN_ROWS]
        rows += [paper_row(name, values, targets, paper.NOTES[table].get(name, "")) for name, values in published.items()]
        return rows
    if table == 3:
        found = sorted({r.system.removeprefix("target-") for r in records if r.system.startswith("target-")})
        extra = [v for v in found if v not in ABLATIONS and v not in NOT_ABLATIONS]
        full = our_row(records, targets, "target-glode", "GLoDe (ours)")
        rows = [full, paper_row(paper.VARIANT_LABELS["glode"], paper.TABLE3_ABLATIONS["glode"], targets)]
        for variant in ABLATIONS + extra:
            label = paper.VARIANT_LABELS.get(variant, variant)
            rows.append(add_deltas(our_row(records, targets, f"target-{variant}", label), full))
            if variant in paper.TABLE3_ABLATIONS:
                published = paper_row(label, paper.TABLE3_ABLATIONS[variant], targets, paper.NOTES[3].get(variant, ""))
                published.deltas = {lang: paper.TABLE3_DELTAS[variant].get(lang) for _, lang in targets}
                rows.append(published)
        return rows
    if table == 4:
        rows = [our_row(records, targets, f"target-{v}", paper.TABLE4_LABELS[v]) for v in ("glode", "agnostic")]
        rows += [paper_row(paper.TABLE4_LABELS[v], paper.TABLE4_FEATURES[v], targets, paper.NOTES[4].get(v, "")) for v in ("glode", "agnostic")]
        return rows
    raise ValueError(f"no table {table} (1-4)")


# --------------------------------------------------------------------------------------------
# output


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def rows_to_frame(table: int, rows: Sequence[Row], backbone: str, scale: str) -> pd.DataFrame:
    """Tidy CSV: one line per table row; per target `<lang>_mean`, `_std`, `_n` (+ `_delta`)."""
    langs = [lang for _, lang in table_targets(table)]
    records = []
    for row in rows:
        ours = row.source == "ours"
        rec: dict = {
            "table": table,
            "row": row.name,
            "source": row.source,
            "system": row.system,
            "backbone": backbone if ours else paper.PAPER_BACKBONE,
            "scale": scale if ours else paper.PAPER_SCALE,
        }
        for lang in langs:
            cell = row.cells[lang]
            rec[f"{lang}_mean"], rec[f"{lang}_std"], rec[f"{lang}_n"] = _round(cell.mean), _round(cell.std), cell.n
            if table == 3:
                rec[f"{lang}_delta"] = _round(row.deltas.get(lang))
        if table in (1, 2):
            avg = row.avg or Cell()
            rec.update(avg_mean=_round(avg.mean), avg_std=_round(avg.std), avg_n=avg.n)
            rec["avg_targets"] = " ".join(row.avg_targets)
            rec["avg_complete"] = bool(row.avg_targets) and len(row.avg_targets) == len(langs)
        rec["note"] = row.note
        records.append(rec)
    frame = pd.DataFrame.from_records(records)
    for column in [c for c in frame.columns if c.endswith("_n")]:
        frame[column] = frame[column].astype("Int64")  # empty, not NaN-as-float, where there is none
    return frame


def format_cell(cell: Cell, delta: float | None = None) -> str:
    if cell.empty:
        return "–"
    text = f"{cell.mean:.2f}"
    if cell.n:
        text += f" ± {cell.std:.2f} (n={cell.n})"
    if delta is not None:
        text += f" [{delta:+.2f}]"
    return text


def rows_to_markdown(table: int, rows: Sequence[Row], backbone: str, scale: str, unreachable: str | None = None) -> str:
    langs = [lang for _, lang in table_targets(table)]
    with_avg = table in (1, 2)
    header = ["Method", "Source", *langs] + (["Avg"] if with_avg else [])
    lines = [
        f"# {TITLES[table]}",
        "",
        f"Ours: backbone `{backbone}`; scale: {scale}. Published: {paper.CITATION}, backbone `{paper.PAPER_BACKBONE}`, {paper.PAPER_SCALE}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|",
    ]
    partial = False
    for row in rows:
        cells = [format_cell(row.cells[lang], row.deltas.get(lang)) for lang in langs]
        if with_avg:
            avg = format_cell(row.avg or Cell())
            if row.avg_targets and len(row.avg_targets) < len(langs):
                avg += f" * (over {', '.join(row.avg_targets)} only)"
                partial = True
            cells.append(avg)
        name = f"{row.name} ‡" if row.note else row.name
        lines.append("| " + " | ".join([name, "ours" if row.source == "ours" else "published", *cells]) + " |")
    lines += ["", "Cells: mean ± sample standard deviation over n seeds (± 0.00 for one seed); published cells are as printed; – = no result."]
    if unreachable:
        lines.append(unreachable)
    if table == 3:
        lines.append("Brackets: variant - GLoDe of the same source (ours: from unrounded means; negative = a drop).")
    if with_avg:
        lines.append("Avg: mean over the targets present in the row; its std and n are over the seeds every one of those targets has.")
        if partial:
            lines.append("\\* an average over only the targets named (the others have no result): not comparable with a full average.")
    notes = [f"- ‡ {row.name} ({'ours' if row.source == 'ours' else 'published'}): {row.note}" for row in rows if row.note]
    notes += [f"- {text}" for key, text in paper.NOTES.get(table, {}).items() if key == "*"]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


# --------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glode tables", description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=int, choices=(1, 2, 3, 4), required=True, help="the paper's table to rebuild")
    parser.add_argument("--metrics", nargs="*", required=True, type=Path, help="metrics.json files, .../eval/{dataset}/{lang}/{system}/seed{seed}/metrics.json")
    parser.add_argument("--backbone", required=True, help="the encoder our results used (printed in the table header)")
    parser.add_argument("--scale", required=True, help='free text, e.g. "demo: 500 train sentences per language, 2 epochs"')
    parser.add_argument("--out", required=True, type=Path, help="tidy CSV to write")
    parser.add_argument("--out-md", type=Path, help="Markdown table to write")
    parser.add_argument("--log", type=Path, help="also log to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    records = load_metrics(args.metrics)  # every input checked before any output is written
    if not records:
        log.warning("no metrics given: table %d has only the published rows", args.table)
    warn_unplaced(records)
    rows = build_rows(args.table, records)
    frame = rows_to_frame(args.table, rows, args.backbone, args.scale)
    markdown = rows_to_markdown(args.table, rows, args.backbone, args.scale, unreachable_note(records))
    write_csv(frame, args.out)
    if args.out_md:
        write_text(markdown, args.out_md)
    ours = [r for r in rows if r.source == "ours"]
    filled = sum(not c.empty for r in ours for c in r.cells.values())
    log.info("table %d: %d metrics files, %d of %d cells of ours filled -> %s", args.table, len(records), filled, sum(len(r.cells) for r in ours), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
