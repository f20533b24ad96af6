"""`glode study`: one seed's results as CSV, merged into a committed directory with its figure."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from glode import study
from glode.io import GlodeInputError


def write_json(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return str(path)


def seed_results(root, seed, glode_gain=0.02):
    """metrics.json of the four study systems and label-quality JSONs of two variants, one target."""
    metrics = [
        write_json(root / f"results/eval/conll/de/{system}/seed{seed}/metrics.json", {"seqeval": {"f1": f1, "precision": f1 + 0.05, "recall": f1 - 0.05}})
        for system, f1 in (("source-plain", 0.40), ("source-mlm", 0.42), ("target-wo_denoising", 0.45), ("target-glode", 0.47 + 0.01 * seed))
    ]
    base = root / "results/analysis/label_quality/conll/de"
    quality = [write_json(base / f"source-mlm/seed{seed}/initial.json", {"seqeval": {"f1": 0.5}})]
    for variant, gain in (("glode", glode_gain), ("wo_denoising", 0.0)):
        for epoch in range(3):
            quality.append(write_json(base / f"{variant}/seed{seed}/epoch{epoch}.json", {"seqeval": {"f1": 0.5 + gain * epoch}, "labels_changed": 10 * epoch if gain else 0}))
    return metrics, quality


def collect(root, seed, **kwargs):
    metrics, quality = seed_results(root, seed, **kwargs)
    scores, curves = root / f"study/seed{seed}/scores.csv", root / f"study/seed{seed}/label_quality.csv"
    argv = ["collect", "--metrics", *metrics, "--quality", *quality, "--initial", "glode=source-mlm", "wo_denoising=source-mlm", "--scores-out", str(scores), "--quality-out", str(curves)]
    assert study.main(argv) == 0
    return scores, curves


def test_collect_writes_percent_scores_and_epoch_zero_initial_rows(tmp_path):
    scores, curves = collect(tmp_path, 1)
    frame = pd.read_csv(scores)
    assert list(frame.columns) == study.SCORE_COLUMNS
    glode = frame[frame["system"] == "target-glode"].iloc[0]
    assert (glode["dataset"], glode["lang"], glode["seed"]) == ("conll", "de", 1)
    assert (glode["f1"], glode["precision"], glode["recall"]) == pytest.approx((48.0, 53.0, 43.0))
    quality = pd.read_csv(curves)
    assert list(quality.columns) == study.QUALITY_COLUMNS
    glode_curve = quality[quality["variant"] == "glode"]
    # epoch 0 = the initial labels (source-mlm's), epoch e = after the e-th epoch (file epoch{e-1})
    assert glode_curve["epoch"].tolist() == [0, 1, 2, 3]
    assert glode_curve["f1"].tolist() == pytest.approx([50.0, 50.0, 52.0, 54.0])
    assert glode_curve["changed"].tolist() == [0, 0, 10, 20]
    assert quality[quality["variant"] == "wo_denoising"]["epoch"].tolist() == [0, 1, 2, 3]


def test_report_merges_seeds_replaces_reruns_and_draws(tmp_path):
    into = tmp_path / "docs/study"
    s1, q1 = collect(tmp_path, 1)
    assert study.main(["report", "--scores", str(s1), "--label-quality", str(q1), "--into", str(into)]) == 0
    s2, q2 = collect(tmp_path / "other-machine", 2)
    assert study.main(["report", "--scores", str(s2), "--label-quality", str(q2), "--into", str(into)]) == 0
    # seed 1 again, with different numbers: its rows are replaced, seed 2's kept
    s1b, q1b = collect(tmp_path / "rerun", 1, glode_gain=0.05)
    assert study.main(["report", "--scores", str(s1b), "--label-quality", str(q1b), "--into", str(into)]) == 0
    scores = pd.read_csv(into / "scores.csv")
    assert len(scores) == 8 and sorted(set(scores["seed"])) == [1, 2]
    quality = pd.read_csv(into / "label_quality.csv")
    assert len(quality) == 2 * 2 * 4
    last = quality[(quality["variant"] == "glode") & (quality["seed"] == 1) & (quality["epoch"] == 3)]["f1"]
    assert last.tolist() == pytest.approx([60.0])
    assert (into / "figure3.png").read_bytes()[:4] == b"\x89PNG"
    assert (into / "figure3_per_seed.png").read_bytes()[:4] == b"\x89PNG"
    gains = study.seed_gains(quality)
    glode_seed1 = gains[(gains["variant"] == "glode") & (gains["seed"] == 1)]
    assert glode_seed1["gain"].tolist() == pytest.approx([0.0, 0.0, 5.0, 10.0])  # the rerun: F1 50, 50, 55, 60 (epochs 0-3)
    summary = (into / "summary.md").read_text()
    # target-glode: 48 (seed 1) and 49 (seed 2): mean 48.50, sample std 0.71
    assert "| target-glode | 48.50 ± 0.71 (n=2) |" in summary
    assert summary.index("source-plain") < summary.index("target-glode")


def test_report_with_an_empty_scores_file_leaves_the_committed_rows_byte_identical(tmp_path):
    # a bootstrap-only merge passes header-only scores; the floats must keep their two decimals
    into = tmp_path / "docs/study"
    s1, q1 = collect(tmp_path, 1)
    assert study.main(["report", "--scores", str(s1), "--label-quality", str(q1), "--into", str(into)]) == 0
    before = {name: (into / name).read_bytes() for name in ("scores.csv", "label_quality.csv")}
    empty_scores, empty_quality = tmp_path / "empty_scores.csv", tmp_path / "empty_quality.csv"
    empty_scores.write_text(s1.read_text().splitlines()[0] + "\n")
    empty_quality.write_text(q1.read_text().splitlines()[0] + "\n")
    assert study.main(["report", "--scores", str(empty_scores), "--label-quality", str(empty_quality), "--into", str(into)]) == 0
    assert {name: (into / name).read_bytes() for name in before} == before


def test_report_refuses_a_csv_with_other_columns(tmp_path):
    bad = tmp_path / "scores.csv"
    bad.write_text("dataset,lang,f1\nconll,de,40\n")
    with pytest.raises(GlodeInputError, match="header"):
        study.main(["report", "--scores", str(bad), "--into", str(tmp_path / "into")])
    assert not (tmp_path / "into/scores.csv").exists()


def test_collect_refuses_quality_without_changed_counts(tmp_path):
    quality = write_json(tmp_path / "results/analysis/label_quality/conll/de/glode/seed1/epoch0.json", {"seqeval": {"f1": 0.5}})
    metrics = write_json(tmp_path / "results/eval/conll/de/source-plain/seed1/metrics.json", {"seqeval": {"f1": 0.4, "precision": 0.4, "recall": 0.4}})
    with pytest.raises(GlodeInputError, match="labels_changed"):
        study.main(["collect", "--metrics", metrics, "--quality", quality, "--initial", "glode=source-mlm", "--scores-out", str(tmp_path / "s.csv"), "--quality-out", str(tmp_path / "q.csv")])


def test_diagnose_reports_changes_thresholds_and_type_scores(tmp_path, capsys):
    from glode.io import write_parquet

    frame = pd.DataFrame({"sent_id": [0, 0, 1], "start": [0, 1, 0], "end": [0, 1, 0], "label": ["PER", "O", "O"]})
    meta = {"classes": ["O", "PER", "LOC"], "epoch": 3, "labels_changed": 2, "changed_to": {"O": 2, "PER": 0, "LOC": 0},
            "directions": {"global_only": 4, "local_only": 1, "both": 7, "both_agree": 5},
            "denoise_end_epoch": {"global_thresholds": [0.5, 0.61234, float("inf")], "local_thresholds": [0.9, 0.2, float("inf")]}}
    write_parquet(frame, tmp_path / "labels.parquet", meta)
    quality = write_json(tmp_path / "q.json", {"per_type": {"PER": {"f1": 0.5}, "LOC": {"f1": 0.0}}})
    assert study.main(["diagnose", "--labels", str(tmp_path / "labels.parquet"), "--quality", quality]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith("| 3 |"))
    assert lines[-1] == "| 3 | - | - | - | - | - | - | not recorded |"  # labels written before the health check
    # LOC: no span labelled with it, so its thresholds are infinite and no span can move to it
    assert row == "| 3 | 2 (O 2) | 4 / 1 / 7 (5) | O 0.500 PER 0.612 LOC inf | O 0.900 PER 0.200 LOC inf | PER 1 LOC 0 | PER 50.0 LOC 0.0 |"
    # --train-logs: ten steps, one per part; losses 0.1 .. 1.0, so last / first = 10
    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(json.dumps({"epoch": 3, "loss_tgt": (i + 1) / 10}) + "\n" for i in range(10)))
    assert study.main(["diagnose", "--labels", str(tmp_path / "labels.parquet"), "--quality", quality, "--train-logs", str(log)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "| 3 | 10 | 0.100 0.200 0.300 0.400 0.500 0.600 0.700 0.800 0.900 1.000 | 10.0 |"


def test_diagnose_without_gold_reads_the_health_and_the_loss_of_a_raw_text_run(tmp_path, capsys):
    """A raw-text target has no gold, so no label-quality files: the labels (with the health check
    each epoch recorded) and the training logs are enough."""
    from glode.io import write_parquet

    health = {"loss_climb": 11.58, "entity_mass_start": 8000.0, "entity_mass_end": 15760.0, "entity_mass_growth": 1.97,
              "entity_mass_vs_initial": 1.97, "predicted_entity_ratio": 1.3, "problems": ["the pseudo labels' entity mass grew 1.97x within the epoch (limit 1.5x)"]}
    frame = pd.DataFrame({"sent_id": [0], "start": [0], "end": [0], "label": ["PER"]})
    write_parquet(frame, tmp_path / "labels.parquet", {"classes": ["O", "PER"], "epoch": 2, "method": "paper", "health": health})
    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(json.dumps({"epoch": 2, "loss_tgt": 1.0}) + "\n" for _ in range(10)))
    assert study.main(["diagnose", "--labels", str(tmp_path / "labels.parquet"), "--train-logs", str(log)]) == 0
    out = capsys.readouterr().out
    assert "| 2 | 0 () | - | - | - | PER 1 | - |" in out  # no quality file: no F1 column
    assert "| 2 | paper | 11.58x | 8,000 -> 15,760 | 1.97x | 1.97x | 1.30x | the pseudo labels' entity mass grew 1.97x within the epoch (limit 1.5x) |" in out
    assert out.splitlines()[-1] == "| 2 | 10 | 1.000 1.000 1.000 1.000 1.000 1.000 1.000 1.000 1.000 1.000 | 1.0 |"
    assert study.main(["diagnose", "--train-logs", str(log)]) == 0  # the logs alone
    assert capsys.readouterr().out.splitlines()[-1].startswith("| 2 | 10 |")
    with pytest.raises(ValueError, match="nothing to diagnose"):
        study.main(["diagnose"])


def test_diagnose_checks_the_changed_labels_against_the_gold(tmp_path, capsys):
    """Hand example: gold `Angela Merkel visited Paris` = PER (0-1), LOC (3). Four spans change:
    (0,1) O -> PER (right), (3,3) O -> LOC (right), (2,2) O -> ORG (wrong), (0,0) PER -> O
    (right: the one-word span is no gold entity); (1,1) stays O."""
    from glode.io import write_parquet

    spans = pd.DataFrame({"sent_id": [7] * 5, "start": [0, 0, 1, 2, 3], "end": [0, 1, 1, 2, 3]})
    classes = ["O", "PER", "LOC", "ORG"]

    def one_hot(labels):  # hard labels, as a label file holds them: the argmax and p_<class>
        return spans.assign(label=labels, **{f"p_{c}": [float(label == c) for label in labels] for c in classes})

    write_parquet(one_hot(["PER", "O", "O", "O", "O"]), tmp_path / "e0.parquet", {"classes": classes, "epoch": 0})
    write_parquet(one_hot(["O", "PER", "O", "ORG", "LOC"]), tmp_path / "e4.parquet", {"classes": classes, "epoch": 4})
    write_parquet(pd.DataFrame({"sent_id": [7], "tags": [["B-PER", "I-PER", "O", "B-LOC"]]}), tmp_path / "gold.parquet")
    quality = [write_json(tmp_path / f"q{e}.json", {"per_type": {}}) for e in (0, 4)]
    argv = ["diagnose", "--labels", str(tmp_path / "e0.parquet"), str(tmp_path / "e4.parquet"), "--quality", *quality, "--gold", str(tmp_path / "gold.parquet")]
    assert study.main(argv) == 0
    changes, soft = capsys.readouterr().out.split("checked against")[1].split("soft targets")
    rows = [line for line in changes.splitlines() if line.startswith("|")]
    assert rows[0] == "| change | spans | old label right | new label right |"
    assert set(rows[2:-1]) == {"| O -> PER | 1 | 0 | 1 |", "| O -> LOC | 1 | 0 | 1 |", "| O -> ORG | 1 | 1 | 0 |", "| PER -> O | 1 | 0 | 1 |"}
    assert rows[-1] == "| all | 4 | 1 | 3 |"
    # one-hot labels: the gold-O spans (0,0), (1,1), (2,2) get p_O 0, 1, 1 at epoch 0 and 1, 1, 0
    # at epoch 4 (mean 0.667, one of three below 0.9 both times); the entities (0,1) PER and
    # (3,3) LOC get p(gold class) 0, 0 at epoch 0 and 1, 1 at epoch 4
    assert [line for line in soft.splitlines() if line.startswith(("| 0", "| 4"))] == [
        "| 0 | O 4 PER 1 LOC 0 ORG 0 | 0.667 | 33.3% | 0.000 |",
        "| 4 | O 2 PER 1 LOC 1 ORG 1 | 0.667 | 33.3% | 1.000 |",
    ]


def test_diagnose_refuses_labels_of_different_runs(tmp_path):
    from glode.io import write_parquet

    write_parquet(pd.DataFrame({"sent_id": [1], "start": [0], "end": [0], "label": ["O"]}), tmp_path / "a.parquet")
    write_parquet(pd.DataFrame({"sent_id": [2], "start": [0], "end": [0], "label": ["O"]}), tmp_path / "b.parquet")
    write_parquet(pd.DataFrame({"sent_id": [1], "tags": [["O"]]}), tmp_path / "gold.parquet")
    with pytest.raises(GlodeInputError, match="not the same run"):
        study.change_rows(tmp_path / "a.parquet", tmp_path / "b.parquet", study.read_gold_span_classes(tmp_path / "gold.parquet"))


def seed_with_predictions(root, seed):
    """seed_results plus source-tokencls, and a predictions.conll beside every metrics.json:
    glode finds both entities of each of 30 sentences, wo_denoising one, the tagger none."""
    from glode.evaluate import write_conll

    metrics, quality = seed_results(root, seed)
    metrics.append(write_json(root / f"results/eval/conll/de/source-tokencls/seed{seed}/metrics.json", {"seqeval": {"f1": 0.3, "precision": 0.3, "recall": 0.3}}))
    words, gold = [["Ana", "saw", "Rome"]] * 30, [["B-PER", "O", "B-LOC"]] * 30
    found = {"target-glode": ["B-PER", "O", "B-LOC"], "target-wo_denoising": ["B-PER", "O", "O"], "source-tokencls": ["O", "O", "O"]}
    for path in metrics:
        system = path.split("/")[-3]
        write_conll(path.replace("metrics.json", "predictions.conll"), words, gold, [found.get(system, ["O"] * 3)] * 30)
    return metrics, quality


def test_collect_and_report_the_token_classifier_and_significance(tmp_path):
    into = tmp_path / "docs/study"
    for seed in (1, 2):
        metrics, quality = seed_with_predictions(tmp_path / f"m{seed}", seed)
        out = tmp_path / f"study/seed{seed}"
        assert study.main(["collect", "--metrics", *metrics, "--quality", *quality, "--initial", "glode=source-mlm", "wo_denoising=source-mlm",
                           "--compare", "target-glode=target-wo_denoising", "target-glode=source-tokencls",
                           "--scores-out", str(out / "scores.csv"), "--quality-out", str(out / "q.csv"), "--bootstrap-out", str(out / "bootstrap.csv")]) == 0
        boot = pd.read_csv(out / "bootstrap.csv")
        assert len(boot) == 2 and set(boot["system_b"]) == {"target-wo_denoising", "source-tokencls"}
        assert boot["sentences"].tolist() == [30, 30] and len(boot["deltas"][0].split()) == 1000
        assert study.main(["report", "--scores", str(out / "scores.csv"), "--label-quality", str(out / "q.csv"), "--bootstrap", str(out / "bootstrap.csv"), "--into", str(into)]) == 0
    scores = pd.read_csv(into / "scores.csv")
    assert len(scores) == 2 * 5 and "source-tokencls" in set(scores["system"])
    significance = pd.read_csv(into / "significance.csv")
    assert list(significance.columns) == ["dataset", "lang", "system_a", "system_b", "seeds", "mean_delta", "ci_low", "ci_high", "p_value"]
    # glode 100 F1 on every sentence, wo_denoising 2*30/(30+60) = 66.67, the tagger 0: no resample changes that
    rows = significance.set_index(["dataset", "lang", "system_b"])
    assert rows.loc[("conll", "de", "target-wo_denoising"), "mean_delta"] == pytest.approx(100 / 3, abs=1e-3)
    assert rows.loc[("conll", "de", "source-tokencls"), "seeds"] == 2
    assert rows.loc[("all", "all", "source-tokencls"), "mean_delta"] == pytest.approx(100.0)
    assert rows.loc[("all", "all", "source-tokencls"), "p_value"] == pytest.approx(1 / 1001, abs=1e-4)
    summary = (into / "summary.md").read_text()
    assert summary.index("| source-tokencls |") < summary.index("| source-plain |")
    assert "| conll/de | target-glode | target-wo_denoising | 2 | +33.33 |" in summary and "A above, significant" in summary
    assert len(pd.read_csv(into / "bootstrap.csv")) == 4


def test_render_writes_the_committed_study_for_the_report(tmp_path):
    into = tmp_path / "docs/study"
    metrics, quality = seed_with_predictions(tmp_path / "m1", 1)
    out = tmp_path / "study/seed1"
    assert study.main(["collect", "--metrics", *metrics, "--quality", *quality, "--initial", "glode=source-mlm", "wo_denoising=source-mlm",
                       "--scores-out", str(out / "s.csv"), "--quality-out", str(out / "q.csv")]) == 0
    assert study.main(["report", "--scores", str(out / "s.csv"), "--label-quality", str(out / "q.csv"), "--into", str(into)]) == 0
    rendered = tmp_path / "rendered"
    assert study.main(["render", "--study", str(into), "--out-dir", str(rendered)]) == 0
    table = pd.read_csv(rendered / "study_scores.csv")
    assert list(table.columns) == ["system", "conll/de"] and table["system"].tolist()[0] == "source-tokencls"
    assert table.set_index("system").loc["target-glode", "conll/de"] == "48.00 ± 0.00 (n=1)"
    # no significance.csv yet: the report says so instead of showing a blank
    assert "does not exist yet" in (rendered / "study_significance.csv").read_text()
    assert (rendered / "study_figure3.png").read_bytes() == (into / "figure3.png").read_bytes()


def test_report_refuses_seeds_of_different_test_files_and_writes_nothing(tmp_path):
    into = tmp_path / "docs/study"
    metrics, quality = seed_with_predictions(tmp_path / "m1", 1)
    out = tmp_path / "study/seed1"
    argv = ["collect", "--metrics", *metrics, "--quality", *quality, "--initial", "glode=source-mlm", "wo_denoising=source-mlm",
            "--compare", "target-glode=target-wo_denoising", "--scores-out", str(out / "s.csv"), "--quality-out", str(out / "q.csv"), "--bootstrap-out", str(out / "b.csv")]
    assert study.main(argv) == 0
    assert study.main(["report", "--scores", str(out / "s.csv"), "--label-quality", str(out / "q.csv"), "--bootstrap", str(out / "b.csv"), "--into", str(into)]) == 0
    before = {p.name: p.read_bytes() for p in into.iterdir()}
    other = pd.read_csv(out / "b.csv").assign(seed=2, sentences=31, test_sha256="f" * 64)
    other.to_csv(tmp_path / "b2.csv", index=False)
    scores2 = pd.read_csv(out / "s.csv").assign(seed=2)
    scores2.to_csv(tmp_path / "s2.csv", index=False)
    with pytest.raises(GlodeInputError, match="seed 2 was scored on a test file of 31 sentences"):
        study.main(["report", "--scores", str(tmp_path / "s2.csv"), "--bootstrap", str(tmp_path / "b2.csv"), "--into", str(into)])
    assert {p.name: p.read_bytes() for p in into.iterdir()} == before


def test_collect_takes_scores_alone(tmp_path):
    """A system scored on its own (the token classifier on a target collected earlier)."""
    path = write_json(tmp_path / "results/eval/conll/de/source-tokencls/seed1/metrics.json", {"seqeval": {"f1": 0.5, "precision": 0.5, "recall": 0.5}})
    assert study.main(["collect", "--metrics", path, "--scores-out", str(tmp_path / "s.csv"), "--quality-out", str(tmp_path / "q.csv")]) == 0
    assert pd.read_csv(tmp_path / "s.csv")["system"].tolist() == ["source-tokencls"] and pd.read_csv(tmp_path / "q.csv").empty
    initial = write_json(tmp_path / "results/analysis/label_quality/conll/de/source-mlm/seed1/initial.json", {"seqeval": {"f1": 0.5}})
    with pytest.raises(GlodeInputError, match="no --initial VARIANT=source-mlm"):
        study.main(["collect", "--metrics", path, "--quality", initial, "--scores-out", str(tmp_path / "s.csv"), "--quality-out", str(tmp_path / "q.csv")])


def test_diagnose_shows_what_the_soft_targets_pass_on(tmp_path):
    """Hand example: gold `Ana saw Rome` = PER (0), LOC (2). Spans (0,0), (1,1), (2,2), (0,1).
    Epoch 2: p_O of the gold-O spans (1,1) 0.95 and (0,1) 0.6, so their mean is 0.775 and one of
    two (50.0%) is below 0.9; p(gold class) of the entities: PER 0.7 on (0,0), LOC 0.5 on (2,2),
    mean 0.6; class mass O 0.2+0.95+0.3+0.6 = 2.05, PER 0.7+0.05+0.2+0.4 = 1.35, LOC 0.1+0+0.5+0 = 0.6."""
    from glode.io import write_parquet

    spans = pd.DataFrame({"sent_id": [3] * 4, "start": [0, 1, 2, 0], "end": [0, 1, 2, 1]})
    probs = {"p_O": [0.2, 0.95, 0.3, 0.6], "p_PER": [0.7, 0.05, 0.2, 0.4], "p_LOC": [0.1, 0.0, 0.5, 0.0]}
    write_parquet(spans.assign(**probs), tmp_path / "e2.parquet", {"classes": ["O", "PER", "LOC"], "epoch": 2})
    write_parquet(pd.DataFrame({"sent_id": [3], "tags": [["B-PER", "O", "B-LOC"]]}), tmp_path / "gold.parquet")
    gold = tmp_path / "gold.parquet"
    rows = study.soft_target_rows([tmp_path / "e2.parquet"], study.read_gold_span_classes(gold), gold)
    assert rows[-1] == "| 2 | O 2 PER 1 LOC 1 | 0.775 | 50.0% | 0.600 |"
    write_parquet(spans.iloc[:3].assign(**{k: v[:3] for k, v in probs.items()}), tmp_path / "other.parquet", {"classes": ["O", "PER", "LOC"], "epoch": 3})
    with pytest.raises(GlodeInputError, match="not the same run"):
        study.soft_target_rows([tmp_path / "e2.parquet", tmp_path / "other.parquet"], study.read_gold_span_classes(gold), gold)


def test_orderings_on_the_mean_per_target_and_their_count():
    """de: glode 70 > wo 65 > plain 60 holds, glode 70 > tokencls 72 does not; hi: seeds 1-2 mean
    glode (50+54)/2 = 52 > wo 51 but wo 51 < plain 53, and glode 52 > tokencls 40."""
    rows = [("de", "target-glode", 1, 70), ("de", "target-wo_denoising", 1, 65), ("de", "source-plain", 1, 60), ("de", "source-tokencls", 1, 72),
            ("hi", "target-glode", 1, 50), ("hi", "target-glode", 2, 54), ("hi", "target-wo_denoising", 1, 51), ("hi", "source-plain", 1, 53),
            ("hi", "source-tokencls", 1, 40)]
    scores = pd.DataFrame([("conll", lang, system, seed, f1) for lang, system, seed, f1 in rows], columns=["dataset", "lang", "system", "seed", "f1"])
    lines = study.ordering_markdown(scores).splitlines()
    assert lines[2] == "| conll/de | yes (70.00 / 65.00 / 60.00) | no (70.00 / 72.00) |"
    assert lines[3] == "| conll/hi | no (52.00 / 51.00 / 53.00) | yes (52.00 / 40.00) |"
    assert lines[4] == "| holds on | 1 of 2 | 1 of 2 |"
    assert study.ordering_markdown(scores[scores["system"] != "source-tokencls"]).splitlines()[0] == "| target | target-glode > target-wo_denoising > source-plain |"


def test_diagnose_loss_trajectory_by_parts_of_the_epoch(tmp_path):
    """Hand example: losses 0.1 0.3 0.5 0.9 in 2 parts -> means 0.2 and 0.7, last / first 3.5;
    5 steps in 2 parts -> numpy's array_split, 3 then 2 steps: (1+1+1)/3 = 1 and (2+4)/2 = 3."""
    log = tmp_path / "epoch4" / "train_log.jsonl"
    log.parent.mkdir()
    log.write_text("".join(json.dumps({"step": i, "epoch": 4, "loss_tgt": v}) + "\n" for i, v in enumerate([0.1, 0.3, 0.5, 0.9])))
    assert study.loss_trajectory_rows([log], parts=2)[-1] == "| 4 | 4 | 0.200 0.700 | 3.5 |"
    five = tmp_path / "five.jsonl"
    five.write_text("".join(json.dumps({"epoch": 2, "loss_tgt": v}) + "\n" for v in [1, 1, 1, 2, 4]))
    assert study.loss_trajectory_rows([five], parts=2)[-1] == "| 2 | 5 | 1.000 3.000 | 3.0 |"
    with pytest.raises(GlodeInputError, match="fewer than the 10 parts"):
        study.loss_trajectory_rows([log])


def test_diagnose_loss_trajectory_names_the_bad_line(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text(json.dumps({"epoch": 2, "loss_tgt": 0.1}) + "\n" + json.dumps({"epoch": 2, "loss_src": 0.1}) + "\n")
    with pytest.raises(GlodeInputError, match=r"train_log.jsonl:2: not a training step with a loss_tgt"):
        study.loss_trajectory_rows([log], parts=1)
