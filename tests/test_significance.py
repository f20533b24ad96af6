"""Paired bootstrap significance (glode.significance) on hand examples with known answers, its
refusal of mismatched predictions, and the study's collect/report of it."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
from seqeval.metrics import f1_score

from glode.evaluate import write_conll
from glode.io import GlodeInputError
from glode.significance import (
    check_same_test,
    combine,
    f1_percent,
    paired_bootstrap_deltas,
    read_conll_predictions,
    resample_indices,
    sentence_counts,
    significance_table,
    summarize,
)

# Two sentences. Sentence 0: gold PER (0-0) and LOC (2-2); sentence 1: gold ORG (0-1).
GOLD = [["B-PER", "O", "B-LOC"], ["B-ORG", "I-ORG"]]
# A finds both entities of sentence 0 and nothing in sentence 1: correct 2, predicted 2, gold 3.
PRED_A = [["B-PER", "O", "B-LOC"], ["O", "O"]]
# B finds PER, mislabels LOC as ORG, and finds the ORG: correct 2, predicted 3, gold 3.
PRED_B = [["B-PER", "O", "B-ORG"], ["B-ORG", "I-ORG"]]


def test_sentence_counts_by_hand():
    assert sentence_counts(GOLD, PRED_A).tolist() == [[2, 2, 2], [0, 0, 1]]
    assert sentence_counts(GOLD, PRED_B).tolist() == [[1, 2, 2], [1, 1, 1]]
    # F1(A) = 2*2 / (2+3) = 80, F1(B) = 2*2 / (3+3) = 66.67
    assert f1_percent(sentence_counts(GOLD, PRED_A).sum(0)) == pytest.approx(80.0)
    assert f1_percent(sentence_counts(GOLD, PRED_B).sum(0)) == pytest.approx(200 / 3)


def test_bootstrap_by_hand():
    counts_a, counts_b = sentence_counts(GOLD, PRED_A), sentence_counts(GOLD, PRED_B)
    # three hand-chosen resamples: sentence 0 twice, sentence 1 twice, both once
    indices = np.array([[0, 0], [1, 1], [0, 1]])
    observed, deltas = paired_bootstrap_deltas(counts_a, counts_b, indices)
    assert observed == pytest.approx(80 - 200 / 3)
    # [0,0]: A 4/4/4 -> 100, B 2/4/4 -> 50; [1,1]: A 0/0/2 -> 0, B 2/2/2 -> 100; [0,1]: the full file
    assert deltas == pytest.approx([50.0, -100.0, 80 - 200 / 3])
    s = summarize(observed, deltas)
    # |50 - 13.33| and |-100 - 13.33| >= 13.33, |0| is not: p = (1 + 2) / (1 + 3)
    assert s.p_value == pytest.approx(0.75)
    assert s.mean_delta == pytest.approx(40 / 3)
    assert s.ci_low == pytest.approx(np.percentile([50, -100, 40 / 3], 2.5))


def test_certain_and_null_differences():
    n = 50
    gold = [["B-PER", "O"]] * n
    right, missed = [["B-PER", "O"]] * n, [["O", "O"]] * n
    indices = resample_indices(n, "d", "xx", samples=1000)
    observed, deltas = paired_bootstrap_deltas(sentence_counts(gold, right), sentence_counts(gold, missed), indices)
    s = summarize(observed, deltas)
    assert observed == 100.0 and s.ci_low == s.ci_high == 100.0
    assert s.p_value == pytest.approx(1 / 1001)  # no resample reaches the null: the smallest p
    same = summarize(*paired_bootstrap_deltas(sentence_counts(gold, right), sentence_counts(gold, right), indices))
    assert same.mean_delta == 0.0 and same.p_value == 1.0


def test_summed_counts_give_seqevals_f1():
    rng = random.Random(4)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    gold = [[rng.choice(tags) for _ in range(rng.randint(1, 9))] for _ in range(200)]
    pred = [[rng.choice(tags) if rng.random() < 0.4 else t for t in g] for g in gold]
    assert f1_percent(sentence_counts(gold, pred).sum(0)) == pytest.approx(100 * f1_score(gold, pred))


def test_resamples_are_shared_by_runs_of_a_target_and_differ_between_targets():
    a = resample_indices(30, "conll", "de", samples=20)
    assert np.array_equal(a, resample_indices(30, "conll", "de", samples=20))
    assert not np.array_equal(a, resample_indices(30, "conll", "es", samples=20))
    assert a.min() >= 0 and a.max() < 30


def test_combining_seeds_equals_resampling_them_jointly():
    rng = np.random.default_rng(0)
    runs = [(rng.integers(0, 3, (40, 3)), rng.integers(0, 3, (40, 3))) for _ in range(3)]
    for a, b in runs:  # correct <= predicted, gold
        a[:, 0] = np.minimum(a[:, 0], a[:, 1:].min(1))
        b[:, 0] = np.minimum(b[:, 0], b[:, 1:].min(1))
    indices = resample_indices(40, "d", "xx", samples=200)
    per_seed = [paired_bootstrap_deltas(a, b, indices) for a, b in runs]
    combined = combine([o for o, _ in per_seed], [d for _, d in per_seed])
    joint = np.mean([f1_percent(a[indices].sum(1)) - f1_percent(b[indices].sum(1)) for a, b in runs], axis=0)
    assert combined.mean_delta == pytest.approx(np.mean([o for o, _ in per_seed]))
    assert combined == summarize(combined.mean_delta, joint)


def write_predictions(path, words, gold, pred):
    write_conll(path, words, gold, pred)
    return path


def test_mismatched_predictions_are_refused_naming_both(tmp_path):
    words = [["Ana", "in", "Rome"], ["UN", "body"]]
    a = read_conll_predictions(write_predictions(tmp_path / "a.conll", words, GOLD, PRED_A))
    fewer = read_conll_predictions(write_predictions(tmp_path / "fewer.conll", words[:1], GOLD[:1], PRED_B[:1]))
    with pytest.raises(GlodeInputError, match=r"a\.conll.*2 sentences.*fewer\.conll has 1"):
        check_same_test(a, fewer)
    other = read_conll_predictions(write_predictions(tmp_path / "other.conll", [["Ana", "in", "Paris"], words[1]], GOLD, PRED_B))
    with pytest.raises(GlodeInputError, match=r"a\.conll.*sentence 1 differs.*other\.conll"):
        check_same_test(a, other)
    check_same_test(a, read_conll_predictions(write_predictions(tmp_path / "b.conll", words, GOLD, PRED_B)))


def test_broken_conll_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.conll"
    bad.write_text("Ana\tB-PER\tB-PER\nin\tO\n", encoding="utf-8")
    with pytest.raises(GlodeInputError, match=r"bad\.conll.*line 2"):
        read_conll_predictions(bad)


def bootstrap_frame(rows):
    from glode.significance import BOOTSTRAP_COLUMNS

    return pd.DataFrame(rows, columns=BOOTSTRAP_COLUMNS)


def test_significance_table_refuses_seeds_of_different_test_files():
    rows = [["conll", "de", "target-glode", "target-wo_denoising", 1, 10, "aaa", 2, 1.0, "1.0 2.0"],
            ["conll", "de", "target-glode", "target-wo_denoising", 2, 11, "bbb", 2, 1.0, "1.0 2.0"]]
    with pytest.raises(GlodeInputError, match="seed 2.*11 sentences.*seed 1.*10 sentences"):
        significance_table(bootstrap_frame(rows))


def test_significance_table_pools_every_target_and_seed():
    rows = [["conll", "de", "A", "B", 1, 10, "x", 3, 1.0, "1 2 3"],
            ["conll", "de", "A", "B", 2, 10, "x", 3, 3.0, "3 4 5"],
            ["wikiann", "hi", "A", "B", 1, 8, "y", 3, -1.0, "-1 -1 -1"]]
    table = significance_table(bootstrap_frame(rows)).set_index(["dataset", "lang"])
    de = table.loc[("conll", "de")]
    assert de["seeds"] == 2 and de["mean_delta"] == 2.0  # resamples (2, 3, 4) around observed 2
    assert de["p_value"] == pytest.approx((1 + 1) / 4)  # of |0|, |1|, |2|, one is >= 2
    pooled = table.loc[("all", "all")]
    assert pooled["seeds"] == 3 and pooled["mean_delta"] == pytest.approx(1.0)
    assert pooled["ci_low"] == pytest.approx(np.percentile([1, 5 / 3, 7 / 3], 2.5))
