"""Paired bootstrap significance of F1 differences between two systems on the same test file.

The test (Koehn, 2004, "Statistical significance tests for machine translation evaluation";
Berg-Kirkpatrick et al., 2012, "An empirical investigation of statistical significance in NLP"):
resample the test *sentences* with replacement B times; on each resample, score both systems'
predictions of those sentences (entity-level micro-F1, seqeval's default mode, as `glode
evaluate`) and take the difference. The F1 of a resample is computed from per-sentence counts
(correct, predicted and gold entities, `sentence_counts`), whose sums over the full file give
exactly the F1 of metrics.json.

- CI: the 2.5th and 97.5th percentiles of the resampled differences (percentile bootstrap).
- p-value (two-sided; Efron and Tibshirani, 1993, sec. 16.4): the resampled differences, shifted
  to mean the observed one, stand for the null hypothesis "no difference";
  p = (1 + #{b: |delta_b - delta| >= |delta|}) / (B + 1). Berg-Kirkpatrick et al.'s one-sided
  test (delta_b > 2 delta) is the same comparison on one side.

Seeds and targets are combined on the *same* resamples: the indices of resample b depend only on
the target (its name seeds the generator) and the number of test sentences, never on the seed of
the run. So one seed's differences, stored as soon as its run is collected (`glode study
collect`), line up with another seed's computed in another session: the combined difference of
resample b is the mean over seeds of their differences on resample b, exactly what a joint
resampling of the test sentences would give. The pooled row (all targets) averages over every
(target, seed) pair, each target resampled independently (a stratified bootstrap).

Why not scipy.stats.bootstrap: it draws its own indices and does not expose them, so resamples of
runs collected at different times could not be lined up. Entities come from seqeval.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from seqeval.metrics.sequence_labeling import get_entities

from glode.io import GlodeInputError

SAMPLES = 1000  # resamples per comparison (issue 20: at least 1,000)
RESAMPLE_SEED = 20240803  # fixed: every run of a target draws the same resamples


@dataclass(frozen=True)
class ConllPredictions:
    """A predictions.conll of `glode evaluate`: words, gold and predicted tags per sentence."""

    path: Path
    tokens: list[list[str]]
    gold: list[list[str]]
    pred: list[list[str]]

    def test_digest(self) -> str:
        """sha256 of the words and gold tags: equal for predictions of the same test file."""
        digest = hashlib.sha256()
        for words, tags in zip(self.tokens, self.gold):
            digest.update(("\n".join(f"{w}\t{t}" for w, t in zip(words, tags)) + "\n\n").encode("utf-8"))
        return digest.hexdigest()


def read_conll_predictions(path: Path | str) -> ConllPredictions:
    """word<TAB>gold<TAB>pred lines, a blank line after each sentence (glode.evaluate.write_conll)."""
    path = Path(path)
    tokens: list[list[str]] = []
    gold: list[list[str]] = []
    pred: list[list[str]] = []
    words: list[str] = []
    g: list[str] = []
    p: list[str] = []
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as err:
        raise GlodeInputError(path, f"not UTF-8 ({err})") from None
    for number, line in enumerate(lines, start=1):
        if not line:
            if words:
                tokens.append(words), gold.append(g), pred.append(p)
                words, g, p = [], [], []
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise GlodeInputError(path, f"line {number}: expected word<TAB>gold<TAB>pred, got {len(fields)} fields")
        words.append(fields[0]), g.append(fields[1]), p.append(fields[2])
    if words:
        tokens.append(words), gold.append(g), pred.append(p)
    return ConllPredictions(path, tokens, gold, pred)


def check_same_test(a: ConllPredictions, b: ConllPredictions) -> None:
    """Refuse predictions of different test files (or different sentence counts), naming both."""
    if len(a.tokens) != len(b.tokens):
        raise GlodeInputError(a.path, f"has {len(a.tokens)} sentences, {b.path} has {len(b.tokens)}: not predictions of the same test file")
    for i, (wa, ga, wb, gb) in enumerate(zip(a.tokens, a.gold, b.tokens, b.gold)):
        if wa != wb or ga != gb:
            raise GlodeInputError(a.path, f"sentence {i + 1} differs from sentence {i + 1} of {b.path} (words or gold tags): not predictions of the same test file")


def sentence_counts(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> np.ndarray:
    """[n_sentences, 3] int64: correct, predicted and gold entities per sentence (seqeval's
    default-mode entities, as the `seqeval` section of metrics.json)."""
    counts = np.zeros((len(gold), 3), dtype=np.int64)
    for i, (g, p) in enumerate(zip(gold, pred)):
        gold_set, pred_set = set(get_entities(list(g))), set(get_entities(list(p)))
        counts[i] = (len(gold_set & pred_set), len(pred_set), len(gold_set))
    return counts


def f1_percent(summed: np.ndarray) -> np.ndarray:
    """Micro-F1 x 100 from summed (correct, predicted, gold) counts along the last axis:
    2 * correct / (predicted + gold), 0 where nothing was predicted or gold."""
    correct, predicted, gold = summed[..., 0], summed[..., 1], summed[..., 2]
    total = predicted + gold
    return np.where(total > 0, 200.0 * correct / np.maximum(total, 1), 0.0)


def resample_indices(n_sentences: int, dataset: str, lang: str, samples: int = SAMPLES) -> np.ndarray:
    """[samples, n_sentences] sentence indices drawn with replacement; the same for every run of
    (dataset, lang) with this many sentences, independent between targets."""
    if n_sentences < 1:
        raise ValueError("no test sentences to resample")
    rng = np.random.default_rng([RESAMPLE_SEED, zlib.crc32(f"{dataset}/{lang}".encode())])
    return rng.integers(0, n_sentences, size=(samples, n_sentences))


def paired_bootstrap_deltas(counts_a: np.ndarray, counts_b: np.ndarray, indices: np.ndarray) -> tuple[float, np.ndarray]:
    """(observed F1(a) - F1(b), the same difference on each resample of `indices`), in F1 points."""
    if counts_a.shape != counts_b.shape:
        raise ValueError(f"counts of {counts_a.shape[0]} and {counts_b.shape[0]} sentences cannot be paired")
    observed = float(f1_percent(counts_a.sum(0)) - f1_percent(counts_b.sum(0)))
    # counts per resample: sum the drawn sentences' rows (one gather per system)
    resampled_a = counts_a[indices].sum(axis=1)
    resampled_b = counts_b[indices].sum(axis=1)
    return observed, f1_percent(resampled_a) - f1_percent(resampled_b)


@dataclass(frozen=True)
class BootstrapSummary:
    mean_delta: float
    ci_low: float
    ci_high: float
    p_value: float


def summarize(observed: float, deltas: np.ndarray) -> BootstrapSummary:
    """Percentile 95% CI and the two-sided shifted-bootstrap p-value of an observed difference."""
    deltas = np.asarray(deltas, dtype=np.float64)
    if deltas.ndim != 1 or len(deltas) == 0:
        raise ValueError("need a 1-d array of resampled differences")
    extreme = int(np.count_nonzero(np.abs(deltas - observed) >= abs(observed) - 1e-9))
    low, high = np.percentile(deltas, [2.5, 97.5])
    return BootstrapSummary(observed, float(low), float(high), (1 + extreme) / (1 + len(deltas)))


def combine(observed: Sequence[float], deltas: Sequence[np.ndarray]) -> BootstrapSummary:
    """Several runs (seeds, or target-seed pairs) on aligned resamples: mean over the runs of the
    observed differences and of each resample's differences."""
    if not observed:
        raise ValueError("nothing to combine")
    lengths = {len(d) for d in deltas}
    if len(lengths) != 1:
        raise ValueError(f"runs have different numbers of resamples: {sorted(lengths)}")
    return summarize(float(np.mean(observed)), np.mean(np.stack(deltas), axis=0))


# -- the study's files: one row of resampled differences per run, and the significance table ----

BOOTSTRAP_COLUMNS = ["dataset", "lang", "system_a", "system_b", "seed", "sentences", "test_sha256", "samples", "delta", "deltas"]
BOOTSTRAP_KEY = ["dataset", "lang", "system_a", "system_b", "seed"]
SIGNIFICANCE_COLUMNS = ["dataset", "lang", "system_a", "system_b", "seeds", "mean_delta", "ci_low", "ci_high", "p_value"]
POOLED = "all"  # dataset and lang of the row pooled over every target and seed
ALPHA = 0.05


def bootstrap_row(dataset: str, lang: str, seed: int, system_a: str, path_a: Path, system_b: str, path_b: Path, samples: int = SAMPLES) -> dict:
    """One run's comparison: the observed difference and its resampled differences (F1 points,
    3 decimals, space-separated), with what identifies the test file it was computed on."""
    a, b = read_conll_predictions(path_a), read_conll_predictions(path_b)
    check_same_test(a, b)
    indices = resample_indices(len(a.tokens), dataset, lang, samples)
    observed, deltas = paired_bootstrap_deltas(sentence_counts(a.gold, a.pred), sentence_counts(b.gold, b.pred), indices)
    return {"dataset": dataset, "lang": lang, "system_a": system_a, "system_b": system_b, "seed": int(seed), "sentences": len(a.tokens),
            "test_sha256": a.test_digest(), "samples": samples, "delta": round(observed, 4), "deltas": " ".join(f"{d:.3f}" for d in deltas)}


def _deltas_of(row, path: Path | str) -> np.ndarray:
    try:
        deltas = np.array([float(x) for x in str(row.deltas).split()], dtype=np.float64)
    except ValueError as err:
        raise GlodeInputError(path, f"{row.dataset}/{row.lang} seed {row.seed}: unreadable deltas ({err})") from None
    if len(deltas) != int(row.samples):
        raise GlodeInputError(path, f"{row.dataset}/{row.lang} seed {row.seed}: {len(deltas)} deltas, samples says {row.samples}")
    return deltas


def significance_table(bootstrap, path: Path | str = "bootstrap.csv"):
    """significance.csv from the stored runs: a row per (target, comparison) over its seeds, and a
    pooled row per comparison over every (target, seed) run; seeds = the runs combined."""
    import pandas as pd

    rows = []
    pooled: dict[tuple[str, str], tuple[list[float], list[np.ndarray]]] = {}
    for (dataset, lang, system_a, system_b), runs in bootstrap.groupby(["dataset", "lang", "system_a", "system_b"], sort=True):
        first = runs.iloc[0]
        for run in runs.itertuples(index=False):
            if (run.test_sha256, run.sentences, run.samples) != (first.test_sha256, first.sentences, first.samples):
                raise GlodeInputError(path, f"{dataset}/{lang} {system_a} vs {system_b}: seed {run.seed} was scored on a test file of {run.sentences} sentences "
                                            f"(sha256 {run.test_sha256[:12]}), seed {first.seed} on one of {first.sentences} sentences (sha256 {first.test_sha256[:12]}): not the same test file")
        observed = [float(d) for d in runs["delta"]]
        deltas = [_deltas_of(run, path) for run in runs.itertuples(index=False)]
        s = combine(observed, deltas)
        rows.append([dataset, lang, system_a, system_b, len(runs), s.mean_delta, s.ci_low, s.ci_high, s.p_value])
        all_observed, all_deltas = pooled.setdefault((system_a, system_b), ([], []))
        all_observed += observed
        all_deltas += deltas
    for (system_a, system_b), (observed, deltas) in sorted(pooled.items()):
        s = combine(observed, deltas)
        rows.append([POOLED, POOLED, system_a, system_b, len(observed), s.mean_delta, s.ci_low, s.ci_high, s.p_value])
    return pd.DataFrame(rows, columns=SIGNIFICANCE_COLUMNS)


def verdict(mean_delta: float, p_value: float, alpha: float = ALPHA) -> str:
    """A: above B or below it, significantly (p < alpha) or not."""
    side = "above" if mean_delta > 0 else "below" if mean_delta < 0 else "level with"
    return f"{side}, {'significant' if p_value < alpha else 'not significant'} (p = {p_value:.3f})"
