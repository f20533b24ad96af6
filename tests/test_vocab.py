"""The MLM head over the corpus vocabulary (`mlm_vocabulary: corpus`, `glode vocab`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CLASSES, synthetic_sentences, write_sentences

from glode.io import GlodeInputError


@pytest.fixture(scope="module")
def tokenizer(tiny_backbone):
    from glode.model import load_tokenizer

    return load_tokenizer(tiny_backbone)


def test_corpus_piece_ids_are_the_pieces_of_the_words_plus_specials(tokenizer):
    from glode.spans import encode_words
    from glode.vocab import corpus_piece_ids

    sentences = [["Berlin", "is", "big", "."], ["Madrid", "!"]]
    ids = corpus_piece_ids(sentences, tokenizer)
    pieces = {i for row in encode_words(tokenizer, sentences)["input_ids"] for i in row}
    specials = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.mask_token_id, tokenizer.unk_token_id}
    assert set(ids.tolist()) == pieces | specials
    assert (np.diff(ids) > 0).all()


def test_vocab_cli_writes_sorted_ids_and_bad_files_are_refused(tiny_backbone, tmp_path):
    from glode import vocab

    write_sentences(synthetic_sentences(12, seed=5), tmp_path / "xx.parquet", "xx", "train", "target", labeled=False)
    assert vocab.main(["--sentences", str(tmp_path / "xx.parquet"), "--tokenizer", str(tiny_backbone), "--out", str(tmp_path / "v.json")]) == 0
    data = json.loads((tmp_path / "v.json").read_text())
    assert data["pieces"] == len(data["piece_ids"]) > 10 and data["piece_ids"] == sorted(set(data["piece_ids"]))
    assert vocab.read_mlm_vocabulary(tmp_path / "v.json", 250037).tolist() == data["piece_ids"]
    with pytest.raises(GlodeInputError, match="v.json.*another tokenizer"):
        vocab.read_mlm_vocabulary(tmp_path / "v.json", 100)
    (tmp_path / "bad.json").write_text(json.dumps({"piece_ids": [5, 3]}))
    with pytest.raises(GlodeInputError, match="bad.json.*sorted"):
        vocab.read_mlm_vocabulary(tmp_path / "bad.json", 100)


def test_restricted_head_gives_the_full_heads_columns(tiny_backbone):
    from glode.model import SpanModel

    torch.manual_seed(0)
    model = SpanModel.from_backbone(tiny_backbone, CLASSES).eval()
    hidden = torch.randn(3, model.config.encoder_config["hidden_size"])
    keep = torch.tensor([0, 2, 7, 500, 250000])
    full = model.mlm_head(hidden)
    assert torch.allclose(model.mlm_head(hidden, keep), full[:, keep], atol=1e-6)


def test_masked_lm_step_over_a_vocabulary_is_eq2_with_the_smaller_normaliser(tiny_backbone):
    """Hand check: the loss is the CE of the masked pieces over the kept columns only."""
    from glode.model import SpanModel
    from glode.objectives import mask_tokens
    from glode.training import CorpusVocabulary, masked_lm_step

    torch.manual_seed(0)
    model = SpanModel.from_backbone(tiny_backbone, CLASSES).eval()
    ids = torch.tensor([[0, 500, 600, 700, 2], [0, 800, 900, 2, 1]])
    batch = {"input_ids": ids, "attention_mask": (ids != 1).long(), "n_maskable": torch.tensor([3, 2])}
    kept = np.array([0, 1, 2, 3, 250001, 500, 600, 700, 800, 900, 1234])
    kept.sort()
    vocabulary = CorpusVocabulary(kept, 250037, torch.device("cpu"))
    loss = masked_lm_step(model, batch, 250001, [0, 1, 2], 0.5, "masked", torch.Generator().manual_seed(3), torch.device("cpu"), vocabulary)

    masked, mask = mask_tokens(ids, batch["attention_mask"], 250001, [0, 1, 2], 0.5, torch.Generator().manual_seed(3))
    assert mask.any()
    with torch.no_grad():
        logits = model.masked_lm_logits(masked, batch["attention_mask"], mask)[:, torch.as_tensor(kept)]
    targets = torch.tensor([int(np.flatnonzero(kept == t)[0]) for t in ids[mask].tolist()])
    assert loss.item() == pytest.approx(F.cross_entropy(logits, targets).item(), rel=1e-5)

    too_small = CorpusVocabulary(np.array([0, 1, 2, 250001]), 250037, torch.device("cpu"))
    with pytest.raises(ValueError, match="not in the MLM corpus vocabulary"):
        masked_lm_step(model, batch, 250001, [0, 1, 2], 0.5, "masked", torch.Generator().manual_seed(3), torch.device("cpu"), too_small)
