"""Frozen bottom layers computed once (`cache_frozen_layers`, `glode frozen-states`)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import CLASSES, synthetic_sentences, write_sentences, write_spans

from glode.io import GlodeInputError


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_backbone):
    from glode import frozen_states
    from glode.model import load_tokenizer

    root = tmp_path_factory.mktemp("frozen")
    tokenizer = load_tokenizer(tiny_backbone)
    for name, seed, suffix, labeled in (("en", 21, "", True), ("xx", 22, "s", False)):
        df = synthetic_sentences(20, seed=seed, lang_suffix=suffix)
        write_sentences(df, root / f"{name}.parquet", name, "train", "source" if labeled else "target", labeled=labeled)
        write_spans(df, root / f"{name}.spans.parquet", tokenizer, labeled=labeled)
        argv = ["--sentences", str(root / f"{name}.parquet"), "--spans", str(root / f"{name}.spans.parquet"), "--backbone", str(tiny_backbone),
                "--train-top-layers", "1", "--batch-size", "7", "--device", "cpu", "--out", str(root / f"{name}.frozen.safetensors")]
        assert frozen_states.main(argv) == 0
    return root


def frozen_model(tiny_backbone, top=1):
    from glode.model import SpanModel

    torch.manual_seed(0)
    model = SpanModel.from_backbone(tiny_backbone, CLASSES)
    model.freeze_encoder_parts(True, top)
    return model.eval()


def test_top_layers_on_bottom_states_equal_the_whole_encoder(tiny_backbone):
    model = frozen_model(tiny_backbone)
    assert model.frozen_depth() == 1
    ids = torch.tensor([[0, 500, 600, 700, 2], [0, 800, 2, 1, 1]])
    mask = (ids != 1).long()
    with torch.no_grad():
        whole = model.encode(ids, mask)
        bottom = model.encode_bottom(ids, mask, 1)
        top = model.encode(ids, mask, frozen_hidden=bottom, frozen_depth=1)
    assert torch.equal(top[mask.bool()], whole[mask.bool()])
    assert len(model.encoder.encoder.layer) == 2  # the layer list is restored after slicing


def test_attached_states_reproduce_eval_mode_logits(data, tiny_backbone):
    """A batch fed from the cache gives the uncached model's span logits (eval mode)."""
    from glode.batching import SpanCollator, build_items, read_spans
    from glode.data import load_sentences
    from glode.frozen_states import attach_frozen_states
    from glode.model import load_tokenizer

    model = frozen_model(tiny_backbone)
    tokenizer = load_tokenizer(tiny_backbone)
    items = build_items(load_sentences(data / "en.parquet"), tokenizer, 128, read_spans(data / "en.spans.parquet"), CLASSES)
    assert attach_frozen_states(items, data / "en.frozen.safetensors", model) == 1
    batch = SpanCollator(tokenizer.pad_token_id)(items[:6])
    with torch.no_grad():
        cached = model(**batch, frozen_depth=1).logits
        whole = model(**{k: v for k, v in batch.items() if k != "frozen_hidden"}).logits
    assert torch.allclose(cached, whole, atol=1e-5)


def test_a_cache_of_other_weights_or_depth_is_refused(data, tiny_backbone):
    from glode.batching import build_items
    from glode.data import load_sentences
    from glode.frozen_states import attach_frozen_states
    from glode.model import load_tokenizer

    items = build_items(load_sentences(data / "en.parquet"), load_tokenizer(tiny_backbone), 128)
    with pytest.raises(GlodeInputError, match="caches 1 bottom layers.*0 frozen"):
        attach_frozen_states(items, data / "en.frozen.safetensors", frozen_model(tiny_backbone, top=2))
    changed = frozen_model(tiny_backbone)
    with torch.no_grad():
        changed.encoder.encoder.layer[0].output.dense.weight.add_(0.01)  # as if a source model had trained it
    with pytest.raises(GlodeInputError, match="other frozen weights"):
        attach_frozen_states(items, data / "en.frozen.safetensors", changed)
    with pytest.raises(GlodeInputError, match="no sentence"):
        attach_frozen_states([{**items[0], "sent_id": 999}], data / "en.frozen.safetensors", frozen_model(tiny_backbone))


def test_source_and_target_training_run_from_the_cache(data, tiny_backbone, tmp_path):
    from glode import pseudo_label, train_source, train_target

    common = ["--batch-size", "4", "--grad-accumulation", "1", "--lr", "1e-3", "--device", "cpu", "--freeze-word-embeddings", "true",
              "--train-top-layers", "1", "--cache-frozen-layers", "true"]
    argv = ["--source-sentences", str(data / "en.parquet"), "--source-spans", str(data / "en.spans.parquet"), "--target-sentences", str(data / "xx.parquet"),
            "--backbone", str(tiny_backbone), "--out", str(tmp_path / "src"), "--epochs", "1", "--frozen-states", str(data / "en.frozen.safetensors"), *common]
    assert train_source.main(argv) == 0
    training = json.loads((tmp_path / "src" / "glode_training.json").read_text())
    assert training["inputs"]["frozen_states"].endswith("en.frozen.safetensors") and training["updates"] == 5

    labels = tmp_path / "labels0.parquet"
    assert pseudo_label.main(["--model", str(tmp_path / "src"), "--sentences", str(data / "xx.parquet"), "--spans", str(data / "xx.spans.parquet"), "--out", str(labels), "--device", "cpu"]) == 0
    argv = ["--epoch", "0", "--num-epochs", "1", "--source-sentences", str(data / "en.parquet"), "--source-spans", str(data / "en.spans.parquet"),
            "--target-sentences", str(data / "xx.parquet"), "--target-spans", str(data / "xx.spans.parquet"), "--labels-in", str(labels),
            "--backbone", str(tiny_backbone), "--init-model", str(tmp_path / "src"), "--state-out", str(tmp_path / "state"), "--labels-out", str(tmp_path / "e0.parquet"),
            "--source-frozen-states", str(data / "en.frozen.safetensors"), "--target-frozen-states", str(data / "xx.frozen.safetensors"), "--k", "5", *common]
    assert train_target.main(argv) == 0
    assert (tmp_path / "e0.parquet").exists()
    with pytest.raises(ValueError, match="needs the sentences' `glode frozen-states` file"):
        train_target.main([a for a in argv if "frozen.safetensors" not in a and a != "--source-frozen-states" and a != "--target-frozen-states"])
