"""`glode train-target` on tiny synthetic data: one epoch per invocation, exact resumption, the
denoiser's wiring, the ablation switches and the supcon variant.

The backbone is the random 2-layer `tiny_backbone`; the initial pseudo labels are built directly
(seeded soft distributions, mostly O) rather than by a source model, which saves a training run.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import CLASSES, module_scratch, synthetic_sentences, write_sentences, write_spans
from safetensors.torch import load_file

from glode.denoise import DenoiseOptions
from glode.io import GlodeInputError, read_parquet_metadata, write_parquet
from glode.methods import DEFAULT_METHOD, METHODS
from glode.pseudo_label import predictions_frame

PROB_COLUMNS = [f"p_{c}" for c in CLASSES]


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_backbone):
    """24 labeled source sentences, 16 unlabeled target sentences, soft initial pseudo labels."""
    from glode.batching import read_spans
    from glode.model import load_tokenizer

    root = tmp_path_factory.mktemp("target_data")
    tokenizer = load_tokenizer(tiny_backbone)
    en = synthetic_sentences(24, seed=11)
    xx = synthetic_sentences(16, seed=12, lang_suffix="s")
    write_sentences(en, root / "en.parquet", "en", "train", "source", labeled=True)
    write_sentences(xx, root / "xx.parquet", "xx", "train", "target", labeled=False)
    write_spans(en, root / "en.spans.parquet", tokenizer, labeled=True)
    write_spans(xx, root / "xx.spans.parquet", tokenizer, labeled=False)
    spans = read_spans(root / "xx.spans.parquet")
    assert spans["label"].isna().all()  # the target train spans carry no gold
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 0.5, (len(spans), len(CLASSES)))
    logits[:, 0] += 0.5  # mostly O, but soft enough for Eq. 11 to flip some argmaxes
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = predictions_frame(spans, xx.drop(columns=["tags"]), probs.astype(np.float32), CLASSES)
    write_parquet(frame, root / "labels0.parquet", metadata={"classes": CLASSES, "model": "constructed", "pruned": False, "spans_path": str(root / "xx.spans.parquet")})
    return root


def default_beta(epoch: int, num_epochs: int, update_start_epoch: int = 2) -> float:
    """Eq. 11's beta under the default behaviour's schedule (glode.methods.DEFAULT_METHOD), which
    is what `glode train-target` runs without --method (the schedules' values: tests/test_methods.py)."""
    schedule = METHODS[DEFAULT_METHOD]["denoise"]["beta_schedule"]
    return DenoiseOptions(beta_schedule=schedule, update_start_epoch=update_start_epoch).beta(epoch, num_epochs)


def run_epoch(data, backbone, out, epoch, num_epochs, labels_in=None, state_in=None, model_out=False, extra=()):
    """One `glode train-target` invocation writing <out>/e<epoch>.{state,labels.parquet,jsonl}."""
    from glode import train_target

    argv = [
        "--epoch", str(epoch), "--num-epochs", str(num_epochs),
        "--source-sentences", str(data / "en.parquet"), "--source-spans", str(data / "en.spans.parquet"),
        "--target-sentences", str(data / "xx.parquet"), "--target-spans", str(data / "xx.spans.parquet"),
        "--labels-in", str(labels_in or data / "labels0.parquet"), "--backbone", str(backbone),
        "--state-out", str(out / f"e{epoch}.state"), "--labels-out", str(out / f"e{epoch}.labels.parquet"),
        "--train-log", str(out / f"e{epoch}.jsonl"),
        "--batch-size", "4", "--grad-accumulation", "2", "--warmup-steps", "1", "--lr", "1e-3",
        "--k", "5", "--device", "cpu", *extra,
    ]  # fmt: skip
    if state_in is not None:
        argv += ["--state-in", str(state_in)]
    if model_out:
        argv += ["--model-out", str(out / "model")]
    assert train_target.main(argv) == 0
    return out / f"e{epoch}.labels.parquet"


def probs_of(path) -> np.ndarray:
    return pd.read_parquet(path)[PROB_COLUMNS].to_numpy()


def log_of(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def three_epochs(data, tiny_backbone, tmp_path_factory):
    """Epochs 0, 1, 2 of a 3-epoch run with the default denoiser (labels updated from epoch 2)."""
    with module_scratch(tmp_path_factory, "three_epochs") as out:
        labels = data / "labels0.parquet"
        for epoch in range(3):
            labels = run_epoch(data, tiny_backbone, out, epoch, 3, labels_in=labels, state_in=out / f"e{epoch - 1}.state" if epoch else None, model_out=epoch == 2)
        yield out


def test_outputs_schema_state_and_log(data, three_epochs):
    out = three_epochs
    initial = probs_of(data / "labels0.parquet")
    for epoch in range(3):
        frame = pd.read_parquet(out / f"e{epoch}.labels.parquet")
        assert list(frame.columns) == ["sent_id", "start", "end", "text", *PROB_COLUMNS, "label", "prob", "epoch"]
        assert frame["epoch"].dtype == np.int16 and (frame["epoch"] == epoch).all()
        assert frame["sent_id"].dtype == np.int64 and frame["start"].dtype == np.int16 and frame[PROB_COLUMNS[0]].dtype == np.float32
        probs = frame[PROB_COLUMNS].to_numpy()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        assert (frame["label"].to_numpy() == np.asarray(CLASSES)[probs.argmax(axis=1)]).all()
        meta = read_parquet_metadata(out / f"e{epoch}.labels.parquet")
        assert meta["epoch"] == epoch and meta["classes"] == CLASSES and meta["denoise_config"]["k"] == 5
        if epoch < 2:  # default timing: nothing is updated before epoch 2
            assert np.array_equal(probs, initial) and meta["labels_changed"] == 0
    meta = read_parquet_metadata(out / "e2.labels.parquet")
    assert meta["denoise_ready"] and meta["beta"] == pytest.approx(default_beta(2, 3)) and meta["labels_updated"] > 0
    directions = meta["directions"]  # every updated span got its direction from one level or both
    assert directions["global_only"] + directions["local_only"] + directions["both"] == meta["labels_updated"]
    assert 0 <= directions["both_agree"] <= directions["both"]
    assert meta["labels_changed"] == int((probs_of(out / "e2.labels.parquet").argmax(1) != initial.argmax(1)).sum()) > 0

    # state: the bank from the end of epoch 0, local thresholds from the end of epoch 1
    for epoch in range(3):
        state = out / f"e{epoch}.state"
        assert {p.name for p in state.iterdir()} == {"model", "optimizer.pt", "denoiser.safetensors", "rng.pt", "trainer.json"}
        denoiser = load_file(str(state / "denoiser.safetensors"))
        assert "bank.embeddings" in denoiser and denoiser["bank.embeddings"].shape[1] == 128
        assert ("local_thresholds" in denoiser) == (epoch >= 1)
        assert json.loads((state / "trainer.json").read_text())["step"] == 2 * (epoch + 1)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    for model_dir in (out / "model", out / "e2.state" / "model"):  # --model-out, and the state's copy the workflow keeps
        assert {"config.json", "model.safetensors", "tokenizer.json", "glode_training.json"} <= {p.name for p in model_dir.iterdir()}

    # one log line per update, 4 steps of 4 sentences / 2 = 2 updates per epoch; the LR schedule
    # runs over all 6 updates of the run, across the three processes
    records = [r for e in range(3) for r in log_of(out / f"e{e}.jsonl")]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6] and [r["epoch"] for r in records] == [0, 0, 1, 1, 2, 2]
    assert [r["lr"] for r in records] == pytest.approx([0.0, 1e-3, 8e-4, 6e-4, 4e-4, 2e-4])
    for r in records:
        assert r["loss_total"] == pytest.approx(r["loss_src"] + r["loss_tgt"] + 1e-3 * r["loss_mlm"], rel=1e-5)
        assert r["loss_mlm"] == r["loss_aux"] and r["loss_aux"] > 0 and r["loss_tgt"] > 0
    assert records[-1]["labels_changed"] == meta["labels_changed"]


def test_rerunning_an_epoch_from_the_previous_state_is_byte_identical(data, tiny_backbone, three_epochs):
    out = three_epochs
    labels_before = (out / "e2.labels.parquet").read_bytes()
    weights_before = (out / "model" / "model.safetensors").read_bytes()
    state_weights_before = (out / "e2.state" / "model" / "model.safetensors").read_bytes()
    shutil.rmtree(out / "e2.state")
    shutil.rmtree(out / "model")
    (out / "e2.labels.parquet").unlink()
    run_epoch(data, tiny_backbone, out, 2, 3, labels_in=out / "e1.labels.parquet", state_in=out / "e1.state", model_out=True)
    assert (out / "e2.labels.parquet").read_bytes() == labels_before
    assert (out / "model" / "model.safetensors").read_bytes() == weights_before
    assert (out / "e2.state" / "model" / "model.safetensors").read_bytes() == state_weights_before == weights_before


def test_final_state_model_predicts(data, three_epochs, tmp_path):
    """The last epoch's state/model is what the workflow keeps as the target model: `glode
    pseudo-label` loads it (weights and tokenizer) like any other model directory."""
    from glode import pseudo_label

    out = tmp_path / "pred.parquet"
    argv = ["--model", str(three_epochs / "e2.state" / "model"), "--sentences", str(data / "xx.parquet"), "--spans", str(data / "xx.spans.parquet"), "--out", str(out), "--device", "cpu"]
    assert pseudo_label.main(argv) == 0
    assert len(pd.read_parquet(out)) == len(pd.read_parquet(data / "labels0.parquet"))


def test_resume_refuses_a_foreign_state(data, tiny_backbone, three_epochs, tmp_path):
    out = three_epochs
    with pytest.raises(GlodeInputError, match="needs epoch 1's"):  # epoch 0's state given to epoch 2
        run_epoch(data, tiny_backbone, tmp_path, 2, 3, labels_in=out / "e1.labels.parquet", state_in=out / "e0.state")
    with pytest.raises(GlodeInputError, match="options differ.*lr"):
        run_epoch(data, tiny_backbone, tmp_path, 1, 3, labels_in=out / "e0.labels.parquet", state_in=out / "e0.state", extra=["--lr", "2e-3"])
    with pytest.raises(GlodeInputError, match="labels of epoch 2"):
        run_epoch(data, tiny_backbone, tmp_path, 1, 3, labels_in=out / "e2.labels.parquet", state_in=out / "e0.state")
    assert list(tmp_path.iterdir()) == []


def test_global_only_denoiser_updates_from_epoch_one_without_a_bank(data, tiny_backbone, tmp_path):
    """update_start_epoch 0 with use_local false: the global thresholds exist from the end of
    epoch 0, so labels change in epoch 1 (none can in epoch 0: no thresholds yet); no bank."""
    extra = ["--update-start-epoch", "0", "--use-local", "false"]
    run_epoch(data, tiny_backbone, tmp_path, 0, 2, extra=extra)
    run_epoch(data, tiny_backbone, tmp_path, 1, 2, labels_in=tmp_path / "e0.labels.parquet", state_in=tmp_path / "e0.state", extra=extra)
    assert read_parquet_metadata(tmp_path / "e0.labels.parquet")["labels_changed"] == 0
    meta = read_parquet_metadata(tmp_path / "e1.labels.parquet")
    assert meta["denoise_ready"] and meta["labels_changed"] > 0 and meta["beta"] == pytest.approx(default_beta(1, 2, update_start_epoch=0))
    for epoch in range(2):
        denoiser = load_file(str(tmp_path / f"e{epoch}.state" / "denoiser.safetensors"))
        assert set(denoiser) == {"prototypes", "global_thresholds"}


def test_denoise_false_never_changes_labels(data, tiny_backbone, tmp_path):
    """The same settings as above with --denoise false (and no auxiliary task): labels stay put."""
    extra = ["--update-start-epoch", "0", "--use-local", "false", "--denoise", "false", "--aux-task", "none"]
    run_epoch(data, tiny_backbone, tmp_path, 0, 2, extra=extra)
    run_epoch(data, tiny_backbone, tmp_path, 1, 2, labels_in=tmp_path / "e0.labels.parquet", state_in=tmp_path / "e0.state", extra=extra)
    assert np.array_equal(probs_of(tmp_path / "e1.labels.parquet"), probs_of(data / "labels0.parquet"))
    assert read_parquet_metadata(tmp_path / "e1.labels.parquet")["labels_changed"] == 0
    assert not (tmp_path / "e1.state" / "denoiser.safetensors").exists()
    records = log_of(tmp_path / "e1.jsonl")
    assert all(r["loss_aux"] is None and r["loss_mlm"] is None for r in records)
    assert all(r["loss_total"] == pytest.approx(r["loss_src"] + r["loss_tgt"], rel=1e-5) for r in records)


def test_supcon_variant_trains_the_projection(data, tiny_backbone, tmp_path):
    from glode.device import seed_everything
    from glode.model import SpanModel

    run_epoch(data, tiny_backbone, tmp_path, 0, 1, model_out=True, extra=["--aux-task", "supcon", "--supcon-max-spans", "64"])
    records = log_of(tmp_path / "e0.jsonl")
    assert all(r["loss_aux"] > 0 and r["loss_mlm"] is None for r in records)
    assert all(r["loss_total"] == pytest.approx(r["loss_src"] + r["loss_tgt"] + r["loss_aux"], rel=1e-5) for r in records)
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["train_projection"] is True
    seed_everything(1)  # the run's initial model
    initial = SpanModel.from_backbone(tiny_backbone, CLASSES, train_projection=True)
    trained = load_file(str(tmp_path / "model" / "model.safetensors"))
    assert not torch.equal(trained["projection.weight"], initial.projection.weight)


@pytest.mark.parametrize("damage", ["drop_row", "swap_rows", "wrong_classes"])
def test_mismatched_labels_are_refused_before_anything_is_written(data, tiny_backbone, tmp_path, damage):
    frame = pd.read_parquet(data / "labels0.parquet")
    meta = read_parquet_metadata(data / "labels0.parquet")
    if damage == "drop_row":
        frame = frame.iloc[:-1]
    elif damage == "swap_rows":
        frame = frame.iloc[[1, 0, *range(2, len(frame))]]
    else:
        frame = frame.drop(columns=["p_MISC"])
    write_parquet(frame.reset_index(drop=True), tmp_path / "bad.parquet", metadata=meta)
    out = tmp_path / "out"
    out.mkdir()
    match = {"drop_row": "label rows but", "swap_rows": "row 0: span", "wrong_classes": "missing columns"}[damage]
    with pytest.raises(GlodeInputError, match=match):
        run_epoch(data, tiny_backbone, out, 0, 2, labels_in=tmp_path / "bad.parquet", model_out=True)
    assert list(out.iterdir()) == []


def test_source_and_target_spans_of_different_settings_are_refused(data, tiny_backbone, tmp_path):
    """max_span_len comes from the spans files only, and source and target must agree on it."""
    from glode.batching import read_spans

    wide = tmp_path / "wide"
    wide.mkdir()
    for name in ("en.parquet", "xx.parquet", "labels0.parquet"):
        shutil.copy(data / name, wide / name)
    meta = read_parquet_metadata(data / "xx.spans.parquet")
    write_parquet(read_spans(data / "xx.spans.parquet"), wide / "xx.spans.parquet", metadata={**meta, "max_span_len": 6})
    shutil.copy(data / "en.spans.parquet", wide / "en.spans.parquet")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(GlodeInputError, match=r"xx\.spans\.parquet.*max_span_len=6.*en\.spans\.parquet.*max_span_len=4"):
        run_epoch(wide, tiny_backbone, out, 0, 2)
    assert list(out.iterdir()) == []


# -- pieces ------------------------------------------------------------------------------------


def test_supervised_contrastive_loss_matches_a_loop():
    from glode.objectives import supervised_contrastive_loss

    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(9, 6, generator=g), dim=1)
    y = torch.tensor([0, 0, 1, 1, 1, 2, 0, 3, 2])  # class 3 has a single span: not an anchor
    tau = 0.1
    terms = []
    for i in range(9):
        positives = [p for p in range(9) if p != i and y[p] == y[i]]
        if not positives:
            continue
        denominator = sum(torch.exp(z[i] @ z[a] / tau) for a in range(9) if a != i)
        terms.append(-sum(torch.log(torch.exp(z[i] @ z[p] / tau) / denominator) for p in positives) / len(positives))
    torch.testing.assert_close(supervised_contrastive_loss(z, y, tau), torch.stack(terms).mean())
    lone = torch.randn(1, 6, requires_grad=True)
    loss = supervised_contrastive_loss(lone, torch.tensor([1]))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(lone.grad).all()


def test_supcon_subsample_keeps_entities_first():
    from glode.train_target import supcon_subsample

    labels = torch.tensor([0] * 50 + [1, 2, 3] + [0] * 10)
    assert supcon_subsample(labels, 100, torch.Generator().manual_seed(0)) is None
    keep = supcon_subsample(labels, 10, torch.Generator().manual_seed(0))
    assert len(keep) == 10 and {50, 51, 52} <= set(keep.tolist()) and keep.tolist() == sorted(keep.tolist())
    again = supcon_subsample(labels, 10, torch.Generator().manual_seed(0))
    assert torch.equal(keep, again)
    assert len(supcon_subsample(labels, 2, torch.Generator().manual_seed(0))) == 2


def test_source_batches_cycle_statelessly_across_epochs():
    from glode.batching import LengthBucketBatchSampler
    from glode.train_target import CycleBatchSampler

    lengths = np.random.default_rng(0).integers(3, 30, 10)
    sampler = LengthBucketBatchSampler(lengths, 3, shuffle=True, seed=5)  # 4 batches per pass
    endless = [b for p in range(4) for b in (sampler.set_epoch(p), sampler.batches())[1]]
    per_epoch = [list(CycleBatchSampler(sampler, e * 3, 3)) for e in range(5)]  # 3 steps per target epoch
    assert [b for epoch in per_epoch for b in epoch] == endless[:15]


def test_variant_flag_is_parsed_checked_and_read_from_the_workflows_paths(tmp_path):
    """`--variant` (both target CLIs) reaches the arguments; without it the variant is the previous
    epoch's record, else the {variant} of a path in the workflow's layout, else None."""
    from glode import target_run
    from glode.train_target import TargetFiles, build_parser, parse_target_arguments, resolve_variant, variant_from_path

    inputs = ["--source-sentences", "a", "--source-spans", "b", "--target-sentences", "c", "--target-spans", "d", "--labels-in", "e", "--backbone", "f"]
    epoch = ["--epoch", "0", "--state-out", "s", "--labels-out", "l", *inputs]
    run = ["--last-epoch", "4", "--run-dir", "r", "--model-out", "m", *inputs]
    assert parse_target_arguments(build_parser(), [*epoch, "--variant", "glode_authors"]).variant == "glode_authors"
    assert parse_target_arguments(target_run.build_parser(), [*run, "--variant", "wo_denoising"]).variant == "wo_denoising"
    assert parse_target_arguments(build_parser(), epoch).variant is None  # the flag is optional
    with pytest.raises(SystemExit):
        parse_target_arguments(build_parser(), [*epoch, "--variant", "glode/x"])

    assert variant_from_path("results/target/conll/es/glode/seed1/model") == "glode"
    assert variant_from_path(tmp_path / "results/target/wikiann/zh/wo_denoising_authors/seed12/epoch3/state") == "wo_denoising_authors"
    assert variant_from_path("results/target/conll/es/glode/model") is None  # no seed{N} directory
    assert variant_from_path("out/e0.state") is None and variant_from_path(None) is None

    def files(state_out: str, final_model: str | None = None) -> TargetFiles:
        return TargetFiles(*map(tmp_path.joinpath, "abcde"), "f", state_out=tmp_path / state_out, labels_out=tmp_path / "l",
                           state_in=tmp_path / "prev", final_model=final_model and tmp_path / final_model)

    layout = files("results/target/conll/es/glode/seed1/epoch0/state", "results/target/conll/es/glode/seed1/model")
    assert resolve_variant(None, layout, None) == "glode"
    assert resolve_variant("glode_mine", layout, None) == "glode_mine"  # the flag wins
    assert resolve_variant(None, files("out/e1.state"), {"variant": "glode"}) == "glode"  # carried over from the previous epoch
    assert resolve_variant(None, files("out/e1.state"), {}) is None  # unknown: the card says so
    with pytest.raises(GlodeInputError, match="variant 'glode', not of --variant 'wo_denoising'"):
        resolve_variant("wo_denoising", files("out/e1.state"), {"variant": "glode"})


def test_objectives_eq3_eq5_hand_computed():
    import torch

    from glode.objectives import source_objective, target_objective

    # Eq. 3: 0.7 + 1e-3 * 5.0 = 0.705 ; Eq. 5: 0.7 + 0.4 + 1e-3 * 5.0 = 1.105
    assert source_objective(torch.tensor(0.7), torch.tensor(5.0), 1e-3).item() == pytest.approx(0.705)
    assert target_objective(torch.tensor(0.7), torch.tensor(0.4), torch.tensor(5.0), 1e-3).item() == pytest.approx(1.105)


def test_init_model_with_supcon_resumes(data, tiny_backbone, tmp_path):
    """`--init-model` (target_init: source) with a trained projection (supcon) resumes at epoch 1:
    the optimizer's parameter groups of epoch 0 must match those rebuilt from the saved state."""
    from transformers import AutoTokenizer

    from glode.model import SpanModel

    init = tmp_path / "source_model"
    model = SpanModel.from_backbone(tiny_backbone, CLASSES)
    assert not model.config.train_projection
    model.save_pretrained(init)
    AutoTokenizer.from_pretrained(str(tiny_backbone)).save_pretrained(str(init))
    supcon = ["--aux-task", "supcon", "--supcon-max-spans", "64"]
    run_epoch(data, tiny_backbone, tmp_path, 0, 2, extra=[*supcon, "--init-model", str(init)])
    run_epoch(data, tiny_backbone, tmp_path, 1, 2, state_in=tmp_path / "e0.state", labels_in=tmp_path / "e0.labels.parquet", extra=supcon)
    assert probs_of(tmp_path / "e1.labels.parquet").shape == probs_of(tmp_path / "e0.labels.parquet").shape


def test_a_run_in_one_process_equals_one_job_per_epoch_byte_for_byte(data, tiny_backbone, tmp_path):
    """`glode train-target-run` (the demo's `target_jobs: run`) writes the same bytes, at the same
    paths, as three `glode train-target` jobs, the `target_model` copy and `glode pseudo-label`."""
    import hashlib

    from glode import pseudo_label, target_run, train_target

    run_dir, model, predictions = tmp_path / "run", tmp_path / "model", tmp_path / "test.parquet"
    common = ["--num-epochs", "3", "--source-sentences", str(data / "en.parquet"), "--source-spans", str(data / "en.spans.parquet"),
              "--target-sentences", str(data / "xx.parquet"), "--target-spans", str(data / "xx.spans.parquet"), "--backbone", str(tiny_backbone),
              "--batch-size", "4", "--grad-accumulation", "2", "--warmup-steps", "1", "--lr", "1e-3", "--k", "5", "--device", "cpu",
              "--variant", "glode"]

    def digests() -> dict[str, str]:
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        return {str(p.relative_to(tmp_path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if "glode_training.json" not in p.name and "train_log" not in p.name}

    labels = data / "labels0.parquet"
    for epoch in range(3):
        out = run_dir / f"epoch{epoch}"
        argv = [*common, "--epoch", str(epoch), "--labels-in", str(labels), "--state-out", str(out / "state"), "--labels-out", str(out / "labels.parquet"),
                "--train-log", str(out / "train_log.jsonl"), "--final-model", str(model)]
        assert train_target.main(argv + (["--state-in", str(run_dir / f"epoch{epoch - 1}" / "state")] if epoch else [])) == 0
        labels = out / "labels.parquet"
    shutil.copytree(run_dir / "epoch2" / "state" / "model", model)
    for epoch in range(3):
        shutil.rmtree(run_dir / f"epoch{epoch}" / "state")
    test_argv = ["--sentences", str(data / "xx.parquet"), "--spans", str(data / "xx.spans.parquet"), "--device", "cpu"]
    assert pseudo_label.main(["--model", str(model), *test_argv, "--out", str(predictions)]) == 0
    per_epoch = digests()
    shutil.rmtree(run_dir), shutil.rmtree(model), predictions.unlink()

    argv = [*common, "--last-epoch", "2", "--run-dir", str(run_dir), "--labels-in", str(data / "labels0.parquet"), "--model-out", str(model),
            "--test-sentences", str(data / "xx.parquet"), "--test-spans", str(data / "xx.spans.parquet"), "--test-predictions-out", str(predictions)]
    assert target_run.main(argv) == 0
    assert digests() == per_epoch
    assert {p.name for p in (run_dir / "epoch1").iterdir()} == {"labels.parquet", "train_log.jsonl"}  # no state left behind
    # the labels name a model that outlives the run: the final one on the last epoch, none before
    # (the epochs' own models are temporary in both layouts)
    models = [read_parquet_metadata(run_dir / f"epoch{e}" / "labels.parquet")["model"] for e in range(3)]
    assert models == [None, None, str(model)]
    # both layouts record the variant, and the final model's card names it
    assert json.loads((model / "glode_training.json").read_text())["variant"] == "glode"
    card = (model / "README.md").read_text()
    assert "\n# glode target-glode (" in card and "- system: `target-glode`" in card and "<variant>" not in card


def test_a_rerun_removes_the_log_temp_file_a_killed_job_left(data, tiny_backbone, tmp_path):
    """A job killed mid-epoch leaves its train log's temporary file (opened when the job starts,
    renamed into place when it ends); running the epoch again removes it, and nothing else."""
    killed = tmp_path / ".e0.jsonl.k1ll3d_.tmp"  # glode.io.atomic_path's name for e0.jsonl
    killed.write_bytes(b"")
    others = [tmp_path / ".e1.jsonl.abc123.tmp", tmp_path / ".e0.jsonl.notes", tmp_path / "e0.jsonl.abc123.tmp"]  # not e0.jsonl's
    for path in others:
        path.write_text("keep")
    run_epoch(data, tiny_backbone, tmp_path, 0, 1)
    assert not killed.exists()
    assert sorted(tmp_path.glob(".e0.jsonl.*.tmp")) == []  # nor this run's own temporary file
    assert all(path.read_text() == "keep" for path in others)
    records = log_of(tmp_path / "e0.jsonl")
    assert records and all(record["epoch"] == 0 for record in records)  # the log itself is complete


def test_update_log_tidies_only_temporary_files_of_its_own_log(tmp_path):
    from glode.training import UpdateLog

    stale = [tmp_path / ".train_log.jsonl.a1b2c3d4.tmp", tmp_path / ".train_log.jsonl.zz_9.tmp"]
    kept = [tmp_path / ".train_log.jsonl.x.y.tmp", tmp_path / ".other_log.jsonl.a1b2c3d4.tmp", tmp_path / "train_log.jsonl"]
    (tmp_path / ".train_log.jsonl.dir1.tmp").mkdir()  # a directory is never ours to delete
    for path in stale + kept:
        path.write_text("")
    with open(tmp_path / ".train_log.jsonl.mine.tmp", "w") as own:
        UpdateLog(own, total=1, desc="test", progress=False).close()
    assert [path.exists() for path in stale] == [False, False]
    assert all(path.exists() for path in kept) and (tmp_path / ".train_log.jsonl.mine.tmp").exists()
    assert (tmp_path / ".train_log.jsonl.dir1.tmp").is_dir()
    with open(tmp_path / "plain.jsonl", "w") as plain:  # not a temporary file: nothing to tidy
        UpdateLog(plain, total=1, desc="test", progress=False).close()
    assert all(path.exists() for path in kept)


@pytest.mark.gpu
def test_cuda_bf16_epochs_run_refine_and_repeat(data, tiny_backbone, tmp_path):
    """The GPU path end to end: three `train-target` epochs on CUDA with bf16 autocast, the kNN
    bank on the GPU (torch back end without faiss-gpu), labels refined in epoch 2, and the same
    seed giving the same labels a second time (glode asks for no deterministic-algorithm mode,
    so this checks that the ops it uses are run-to-run stable on this GPU)."""
    extra = ["--device", "cuda", "--precision", "bf16"]
    runs = []
    for attempt in ("a", "b"):
        out = tmp_path / attempt
        out.mkdir()
        labels = data / "labels0.parquet"
        for epoch in range(3):
            labels = run_epoch(data, tiny_backbone, out, epoch, 3, labels_in=labels, state_in=out / f"e{epoch - 1}.state" if epoch else None, extra=extra)
        runs.append(out)
    meta = read_parquet_metadata(runs[0] / "e2.labels.parquet")
    assert meta["denoise_ready"] and meta["labels_updated"] > 0
    assert json.loads((runs[0] / "e2.state" / "model" / "glode_training.json").read_text())["device"].startswith("cuda")
    assert log_of(runs[0] / "e2.jsonl")[-1]["loss_total"] == pytest.approx(log_of(runs[1] / "e2.jsonl")[-1]["loss_total"], rel=1e-6)
    assert np.array_equal(probs_of(runs[0] / "e2.labels.parquet"), probs_of(runs[1] / "e2.labels.parquet"))


@pytest.mark.gpu
def test_cuda_bf16_prediction_agrees_with_cpu_fp32(data, three_epochs, tmp_path):
    """`glode pseudo-label` of one model on CUDA (bf16 autocast) and on the CPU (fp32): the same
    spans, class distributions within bf16 rounding, and nearly every argmax the same."""
    from glode import pseudo_label

    frames = {}
    for device, precision in (("cpu", "fp32"), ("cuda", "bf16")):
        out = tmp_path / f"{device}.parquet"
        argv = ["--model", str(three_epochs / "e2.state" / "model"), "--sentences", str(data / "xx.parquet"), "--spans", str(data / "xx.spans.parquet"),
                "--out", str(out), "--device", device, "--precision", precision]
        assert pseudo_label.main(argv) == 0
        frames[device] = pd.read_parquet(out)
    cpu, gpu = frames["cpu"], frames["cuda"]
    assert cpu[["sent_id", "start", "end"]].equals(gpu[["sent_id", "start", "end"]])
    np.testing.assert_allclose(gpu[PROB_COLUMNS].to_numpy(), cpu[PROB_COLUMNS].to_numpy(), atol=0.03)
    assert (gpu["label"] == cpu["label"]).mean() >= 0.95
