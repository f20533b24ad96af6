"""The two behaviours of the target stage (glode.methods): each option where the authors' code
differs from the paper, on a hand-computed example, the preset that switches them together, and
the run-health check (glode.health)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import CLASSES
from test_train_target import data, probs_of, run_epoch  # noqa: F401 - `data` is a fixture

from glode.denoise import DenoiseOptions, beta_schedule, beta_schedule_authors, class_thresholds, class_thresholds_with_zero_row
from glode.health import HealthLimits, entity_mass, epoch_health, loss_climb
from glode.io import read_parquet_metadata
from glode.methods import DEFAULT_METHOD, METHOD_TEXT, METHODS, method_deviations, method_keys
from glode.objectives import TargetLossForm, soft_cross_entropy_on_probabilities, soft_span_cross_entropy
from glode.pseudo_label import overlap_losers, prune_to_authors_form

# -- the loss on probabilities (authors' train_tgt_model.py:59, 289, 415, 693) ---------------------


def test_loss_on_probabilities_is_bounded_per_span():
    # Five classes, a confident span: softmax(z) = (1, 0, 0, 0, 0) (to float precision).
    # log_softmax of that vector: entry c is p_c - log(e^1 + 4 e^0) = p_c - log(e + 4), log(e + 4) = 1.904832.
    #   target one-hot O (right):  -(1 - 1.904832) = 0.904832, the floor
    #   target one-hot PER (wrong): -(0 - 1.904832) = 1.904832, the ceiling
    confident = torch.tensor([[50.0, 0.0, 0.0, 0.0, 0.0]] * 2)
    targets = torch.tensor([[1.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0]])
    losses = soft_cross_entropy_on_probabilities(confident, targets)
    assert losses.tolist() == pytest.approx([0.904832, 1.904832], abs=1e-6)
    # Eq. 4 on the same logits: 0 and 50, unbounded
    assert soft_span_cross_entropy(confident[1:], targets[1:], torch.tensor([0]), 1).item() == pytest.approx(50.0, abs=1e-4)
    # any logits, any target distribution: inside the bounds
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 5, generator=g) * 10
    soft = torch.softmax(torch.randn(200, 5, generator=g) * 3, dim=1)
    losses = soft_cross_entropy_on_probabilities(logits, soft)
    assert float(losses.min()) >= 0.904832 - 1e-6 and float(losses.max()) <= 1.904832 + 1e-6


def test_loss_on_probabilities_has_a_vanishing_gradient_on_confident_spans():
    # p = softmax(z) = (0.93, 0.0175, 0.0175, 0.0175, 0.0175), target q = (0.8, 0, 0, 0.2, 0).
    # Eq. 4: dL/dz = p - q = (0.13, 0.0175, 0.0175, -0.1825, 0.0175); norm sqrt(0.0169 + 3 * 0.00030625 + 0.03330625) = 0.226108.
    # Authors' form: L = -sum q log_softmax(p); with r = softmax(p) = (0.383719, 0.154070 x 4),
    #   dL/dp = r - q = (-0.416281, 0.154070, 0.154070, -0.045930, 0.154070), and through the softmax
    #   dL/dz = p * (dL/dp - <p, dL/dp>), <p, dL/dp> = -0.380707:
    #   (-0.033875, 0.009344, 0.009344, 0.005844, 0.009344); norm 0.037994, a sixth of Eq. 4's.
    p = torch.tensor([[0.93, 0.0175, 0.0175, 0.0175, 0.0175]])
    q = torch.tensor([[0.8, 0.0, 0.0, 0.2, 0.0]])
    grads = {}
    for name in ("eq4", "authors"):
        z = p.log().clone().requires_grad_(True)
        loss = soft_span_cross_entropy(z, q, torch.tensor([0]), 1) if name == "eq4" else soft_cross_entropy_on_probabilities(z, q).sum()
        loss.backward()
        grads[name] = z.grad[0]
    assert grads["eq4"].tolist() == pytest.approx([0.13, 0.0175, 0.0175, -0.1825, 0.0175], abs=1e-6)
    assert float(grads["eq4"].norm()) == pytest.approx(0.226108, abs=1e-5)
    assert grads["authors"].tolist() == pytest.approx([-0.033875, 0.009344, 0.009344, 0.005844, 0.009344], abs=1e-5)
    assert float(grads["authors"].norm()) == pytest.approx(0.037994, abs=1e-5)


def test_loss_form_averages_per_sentence_or_over_spans():
    # Two classes, every span has logits [0, ln 3]: p = (1/4, 3/4); CE(label 0) = ln 4, CE(label 1) = ln 4/3.
    # Spans 0, 1 in sentence 0 (labels 0, 1), span 2 alone in sentence 1 (label 0):
    #   per sentence: ((ln 4 + ln 4/3) / 2 + ln 4) / 2 = (0.836988 + 1.386294) / 2 = 1.111641
    #   flat:         (2 ln 4 + ln 4/3) / 3 = 1.020090
    logits = torch.tensor([[0.0, math.log(3)]] * 3)
    labels = torch.tensor([0, 1, 0])
    sentence = torch.tensor([0, 0, 1])
    one_hot = torch.nn.functional.one_hot(labels, 2).float()
    paper, flat = TargetLossForm("logits", "sentence"), TargetLossForm("logits", "span")
    assert paper.source(logits, labels, sentence, 2).item() == pytest.approx(1.111641, abs=1e-6)
    assert flat.source(logits, labels, sentence, 2).item() == pytest.approx(1.020090, abs=1e-6)
    assert paper.target(logits, one_hot, sentence, 2).item() == pytest.approx(1.111641, abs=1e-6)
    assert flat.target(logits, one_hot, sentence, 2).item() == pytest.approx(1.020090, abs=1e-6)
    # the authors' target loss, flat: softmax(p) of p = (1/4, 3/4) is (e^0.25, e^0.75) / sum = (0.377541, 0.622459);
    # -log of those: 0.974077 and 0.474077; (2 * 0.974077 + 0.474077) / 3 = 0.807410
    authors = TargetLossForm("probabilities", "span")
    assert authors.target(logits, one_hot, sentence, 2).item() == pytest.approx(0.807410, abs=1e-6)
    assert authors.source(logits, labels, sentence, 2).item() == pytest.approx(1.020090, abs=1e-6)  # L_src stays on logits
    with pytest.raises(ValueError, match="loss averaging"):
        TargetLossForm("logits", "batch")


# -- beta (Eq. 11) and the thresholds (Eq. 7) ------------------------------------------------------


def test_beta_schedules_of_the_paper_and_of_the_code():
    # 5 epochs, labels change from epoch 2. Paper: 0.95 + (0.80 - 0.95) * e / 4 -> 0.875, 0.8375, 0.80.
    # Code (TT:678, warm-up epoch w = 1): 0.95 - 0.15 * (e - 1) / 4 -> 0.9125, 0.875, 0.8375.
    assert [beta_schedule(e, 5) for e in (2, 3, 4)] == pytest.approx([0.875, 0.8375, 0.80])
    assert [beta_schedule_authors(e, 5) for e in (2, 3, 4)] == pytest.approx([0.9125, 0.875, 0.8375])
    options = DenoiseOptions(beta_schedule="authors")
    assert options.beta(3, 5) == pytest.approx(0.875) and DenoiseOptions().beta(3, 5) == pytest.approx(0.8375)
    with pytest.raises(ValueError):
        beta_schedule_authors(0, 1)


def test_thresholds_with_a_zero_row():
    # Class 0 (O): spans with own scores 0.6 and 0.8 -> paper mean 0.7; the code adds a zero row: 1.4 / 3 = 0.466667.
    # Class 1: one span, 0.9 -> 0.9 and 0.45. Class 2: no span -> paper +inf, code 0.
    scores = torch.tensor([[0.6, 0.1, 0.0], [0.8, 0.3, 0.2], [0.2, 0.9, 0.5]])
    labels = torch.tensor([0, 0, 1])
    assert class_thresholds(scores, labels, 3).tolist() == pytest.approx([0.7, 0.9, math.inf])
    assert class_thresholds_with_zero_row(scores, labels, 3).tolist() == pytest.approx([1.4 / 3, 0.45, 0.0])
    assert DenoiseOptions(thresholds="authors").class_thresholds(scores, labels, 3).tolist() == pytest.approx([1.4 / 3, 0.45, 0.0])


# -- one-hot O: the initial labels and the loss's overlap pruning -----------------------------------


def _overlapping_spans():
    # Sentence 7: spans (0,0) ORG 0.6, (0,1) ORG 0.7, (1,1) O, (2,2) PER 0.5. Greedy resolution keeps
    # (0,1) (the most probable) and (2,2); (0,0) overlaps (0,1) and loses; (1,1) is O.
    spans = pd.DataFrame({"sent_id": [7, 7, 7, 7], "start": [0, 0, 1, 2], "end": [0, 1, 1, 2]})
    probs = np.array([[0.3, 0.05, 0.05, 0.6, 0.0],
                      [0.2, 0.05, 0.05, 0.7, 0.0],
                      [0.9, 0.05, 0.05, 0.0, 0.0],
                      [0.3, 0.5, 0.1, 0.1, 0.0]], dtype=np.float32)  # fmt: skip
    return spans, probs


def test_overlap_losers_and_the_authors_initial_labels():
    spans, probs = _overlapping_spans()
    losers = overlap_losers(spans["sent_id"].to_numpy(), spans["start"].to_numpy(), spans["end"].to_numpy(), probs, CLASSES)
    assert losers.tolist() == [True, False, False, False]
    pruned = prune_to_authors_form(spans, probs, CLASSES)
    one_hot_o = [1.0, 0.0, 0.0, 0.0, 0.0]
    assert pruned[0].tolist() == one_hot_o and pruned[2].tolist() == one_hot_o  # the loser and the O span
    np.testing.assert_array_equal(pruned[[1, 3]], probs[[1, 3]])  # kept entities keep their distribution


def test_overlap_pruning_in_the_loss_trains_losers_as_one_hot_o():
    from glode.train_target import prune_overlaps

    spans, probs = _overlapping_spans()
    keys = tuple(spans[k].to_numpy(dtype=np.int64) for k in ("sent_id", "start", "end"))
    rows = np.array([3, 0, 1])  # the batch holds three of the spans, in another order
    targets = torch.from_numpy(probs[rows])
    pruned = prune_overlaps(targets, rows, keys, CLASSES)
    assert pruned[1].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert torch.equal(pruned[[0, 2]], targets[[0, 2]])


# -- the preset ---------------------------------------------------------------------------------


def test_presets_cover_the_same_keys_and_deviations_name_the_changed_ones():
    from glode.train_target import TargetTrainingOptions

    paper, authors = method_keys("paper"), method_keys("authors")
    assert {s: set(v) for s, v in paper.items()} == {s: set(v) for s, v in authors.items()}
    assert all(paper[s][k] != authors[s][k] for s in paper for k in paper[s])  # every key differs
    target_fields, denoise_fields = set(TargetTrainingOptions.__dataclass_fields__), set(DenoiseOptions.__dataclass_fields__)
    assert set(paper["target"]) <= target_fields and set(paper["denoise"]) <= denoise_fields
    assert method_deviations("paper", TargetTrainingOptions(), DenoiseOptions()) == {}  # the defaults are the paper's
    mixed = TargetTrainingOptions(method="authors", **{**authors["target"], "prune_initial_labels": False})
    assert method_deviations("authors", mixed, DenoiseOptions(**authors["denoise"])) == {"prune_initial_labels": False}
    with pytest.raises(ValueError, match="unknown method"):
        method_keys("code")
    assert set(METHODS) == {"paper", "authors", "authors_soft_o"}
    soft_o = method_keys("authors_soft_o")
    assert soft_o["denoise"] == authors["denoise"] and soft_o["target"] == {**authors["target"], "prune_initial_labels": False}


def test_method_flag_sets_the_preset_and_an_explicit_flag_wins():
    from glode.train_target import build_parser, parse_target_arguments

    required = ["--epoch", "0", "--state-out", "s", "--labels-out", "l", "--source-sentences", "a", "--source-spans", "b",
                "--target-sentences", "c", "--target-spans", "d", "--labels-in", "e", "--backbone", "f"]  # fmt: skip
    default = parse_target_arguments(build_parser(), required)
    assert default.method == DEFAULT_METHOD
    assert all(getattr(default, k) == v for section in method_keys(DEFAULT_METHOD).values() for k, v in section.items())
    paper = parse_target_arguments(build_parser(), [*required, "--method", "paper"])
    assert (paper.method, paper.target_loss_input, paper.beta_schedule, paper.prune_initial_labels) == ("paper", "logits", "paper", False)
    authors = parse_target_arguments(build_parser(), [*required, "--method", "authors", "--prune-initial-labels", "false"])
    assert (authors.target_loss_input, authors.loss_averaging, authors.thresholds, authors.epoch_labels) == ("probabilities", "span", "authors", "before_update")
    assert authors.prune_initial_labels is False and authors.prune_overlaps_in_loss is True


def test_the_default_is_stated_once_and_the_study_keeps_the_paper_literal_runs(project_root):
    """config/config.yaml names DEFAULT_METHOD; config/study.yaml pins `paper`, since its committed
    `glode` and `wo_denoising` results were trained under the paper's text; the long-span overlay
    runs the default, as issue 29 asks."""
    import yaml

    from glode.config import SCHEMA_PATH, load_config

    assert load_config()["method"] == DEFAULT_METHOD
    schema = yaml.safe_load(SCHEMA_PATH.read_text())["properties"]
    assert schema["method"]["enum"] == list(METHODS) == list(METHOD_TEXT)  # every preset configurable and named in words
    assert schema["variants"]["additionalProperties"]["properties"]["method"]["enum"] == list(METHODS)
    study = load_config(project_root / "config/study.yaml")
    assert study["method"] == "paper" and study["variants"]["glode_authors"]["method"] == "authors"
    # the paper's text stays one variant away from the default, and issue 29's overlay runs the default
    assert load_config()["variants"]["glode_paper"] == {"method": "paper"}
    long_spans = load_config(project_root / "config/study.yaml", project_root / "config/study-long-spans.yaml")
    assert long_spans["method"] == DEFAULT_METHOD


def test_an_authors_run_trains_records_its_behaviour_and_health(data, tiny_backbone, tmp_path):  # noqa: F811
    """Three epochs under `--method authors` on the tiny data: one-hot O initial labels, the
    method and the health check in the labels' metadata, the state and the model card."""
    labels = data / "labels0.parquet"
    for epoch in range(3):
        labels = run_epoch(data, tiny_backbone, tmp_path, epoch, 3, labels_in=labels, state_in=tmp_path / f"e{epoch - 1}.state" if epoch else None,
                           model_out=epoch == 2, extra=("--method", "authors"))
    initial = probs_of(data / "labels0.parquet")
    e0 = probs_of(tmp_path / "e0.labels.parquet")
    o_spans = initial.argmax(1) == 0
    assert o_spans.any() and (e0[o_spans] == np.array([1.0, 0, 0, 0, 0], dtype=np.float32)).all()  # one-hot O
    assert not np.array_equal(e0, initial)
    meta = read_parquet_metadata(tmp_path / "e2.labels.parquet")
    assert meta["method"] == "authors" and meta["method_deviations"] == {} and meta["pruned"] is True
    assert meta["beta"] == pytest.approx(0.95 - 0.15 * (2 - 1) / (3 - 1))  # the code's schedule: 0.875 in epoch 2 of 3
    health = meta["health"]
    assert health["entity_mass_initial"] == pytest.approx(entity_mass(e0), rel=1e-6)
    assert health["entity_mass_end"] == pytest.approx(entity_mass(probs_of(tmp_path / "e2.labels.parquet")), rel=1e-6)
    assert health["loss_climb"] is None  # 2 updates per epoch: fewer than the 10 parts
    assert [h["epoch"] for h in health["history"]] == [0, 1, 2]
    trainer = json.loads((tmp_path / "e2.state" / "trainer.json").read_text())
    assert trainer["method"] == "authors" and trainer["options"]["target_loss_input"] == "probabilities"
    card = (tmp_path / "model" / "README.md").read_text()
    assert "- method: `authors` (the authors' code)" in card and "No epoch passed a run-health limit." in card
    records = [json.loads(line) for line in (tmp_path / "e0.jsonl").read_text().splitlines()]
    assert all(0.9 <= r["loss_tgt"] <= 1.91 for r in records)  # the bounded loss: per span in [0.905, 1.905]


# -- run health -----------------------------------------------------------------------------------


def test_health_measures_and_limits_by_hand():
    # 20 updates: the first two (the first tenth) at 0.02, the last two at 0.2 -> climb 10x.
    losses = [0.02, 0.02] + [0.05] * 16 + [0.2, 0.2]
    assert loss_climb(losses) == pytest.approx(10.0)
    assert loss_climb(losses[:9]) is None
    assert entity_mass(np.array([[1.0, 0, 0], [0.25, 0.75, 0], [0.5, 0.25, 0.25]])) == pytest.approx(1.25)
    limits = HealthLimits(max_loss_climb=3.0, max_mass_growth=1.5)
    bad = epoch_health(losses, mass_start=100.0, mass_end=200.0, mass_initial=80.0, predicted_entities=30, initial_entities=20, limits=limits)
    assert bad["entity_mass_growth"] == pytest.approx(2.0) and bad["entity_mass_vs_initial"] == pytest.approx(2.5)
    assert bad["predicted_entity_ratio"] == pytest.approx(1.5)
    assert len(bad["problems"]) == 2 and "10.0x" in bad["problems"][0] and "2.00x" in bad["problems"][1]
    good = epoch_health([0.02] * 20, 100.0, 120.0, 100.0, 20, 20, limits)
    assert good["problems"] == [] and good["loss_climb"] == pytest.approx(1.0)
    assert epoch_health(losses, 100.0, 200.0, 80.0, 30, 20, HealthLimits(0, 0))["problems"] == []  # 0 = off


def test_health_stop_raises_before_any_output(data, tiny_backbone, tmp_path):  # noqa: F811
    """With --health-stop and a limit every epoch passes, epoch 0 writes nothing."""
    from glode.train_target import RunHealthError

    # the initial labels' entity mass is the epoch's start; a growth limit below 1 trips at once
    with pytest.raises(RunHealthError, match="entity mass"):
        run_epoch(data, tiny_backbone, tmp_path, 0, 3, extra=("--health-max-mass-growth", "0.5", "--health-stop", "true"))
    assert not list(tmp_path.iterdir())  # no labels, state, log, nor a temporary file
