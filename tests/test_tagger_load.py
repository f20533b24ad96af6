"""Loading a tagger prints no progress bar (directly and through the spaCy component) and leaves
transformers' bars as they were; a text that is not a string, or an item that is not a Doc, is a
clear error naming its position. The model is the random `tiny_backbone` with its span heads
scaled so that it finds entities. No timings here: benchmarks/bench_tagger_startup.py measures.
"""

from __future__ import annotations

import pytest
import torch
from conftest import CLASSES

from glode.tagger import Tagger

TEXTS = ["Angela Merkel visited Paris on Monday.", "The EU and Siemens said talks in New York were a success.", "", "Maria  went to Berlin ."]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_backbone):
    """A span model saved as train-source saves one, its projection frozen (the default)."""
    from glode.model import SpanModel, load_tokenizer
    from glode.training import save_model_dir

    torch.manual_seed(0)
    model = SpanModel.from_backbone(tiny_backbone, CLASSES)
    with torch.no_grad():
        model.classifier.weight.mul_(30.0)
        model.classifier.bias.copy_(torch.tensor([2.0, 0.0, 0.0, 0.0, 0.0]))
        model.mlm_head.bias.normal_()  # not all zeros, so that a head left unread would show
    out = tmp_path_factory.mktemp("tagger_load") / "model"
    save_model_dir(out, model.eval(), load_tokenizer(tiny_backbone), {"span_settings": {"max_span_len": 4, "max_seq_len": 128}, "splitter": {"lang": "en"}})
    return out


@pytest.mark.parametrize("quiet", [True, False])
def test_no_progress_bar_on_load_and_training_keeps_its_bars(model_dir, capfd, quiet):
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    capfd.readouterr()
    Tagger.load(model_dir, device="cpu", quiet=quiet)
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "it/s" not in err
    assert hf_logging.is_progress_bar_enabled()  # as it was before the load


def test_no_progress_bar_through_the_spacy_component(model_dir, capfd):
    import spacy

    nlp = spacy.blank("en")
    capfd.readouterr()
    nlp.add_pipe("glode_ner", config={"model": str(model_dir)})
    nlp("Angela Merkel visited Paris.")
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "it/s" not in err


def test_a_text_that_is_not_a_string_is_named_by_its_position(model_dir, monkeypatch):
    tagger = Tagger.load(model_dir, device="cpu", quiet=True)

    def no_work(*_):
        raise AssertionError("tagged before the inputs were checked")

    monkeypatch.setattr(tagger, "split", no_work)
    with pytest.raises(TypeError, match=r"texts\[1\] is None \(NoneType\), not a str") as caught:
        tagger.tag(["a", None])
    assert "E1041" not in str(caught.value)
    with pytest.raises(TypeError, match=r"texts\[2\] is b'x' \(bytes\)"):
        tagger.tag(iter(["a", "b", b"x"]))
    with pytest.raises(TypeError, match=r"texts\[0\] is \['Angela', 'Merkel'\] \(list\)"):
        tagger.tag([["Angela", "Merkel"]])
    with pytest.raises(TypeError, match="wrap a single text in a list"):
        tagger.tag("a")


def test_the_spacy_component_names_an_item_that_is_not_a_doc(model_dir):
    import spacy

    nlp = spacy.blank("en")
    component = nlp.add_pipe("glode_ner", config={"model": str(model_dir)})
    with pytest.raises(TypeError, match=r"docs\[1\] is NoneType, not a spaCy Doc"):
        list(component.pipe([nlp.make_doc("Angela Merkel visited Paris."), None]))
    with pytest.raises(TypeError, match="expected a spaCy Doc, got str"):
        component("Angela Merkel visited Paris.")
    assert component(nlp.make_doc("Angela Merkel visited Paris.")).text == "Angela Merkel visited Paris."
