"""The span model (section 3.1), its MLM head and the losses of Eqs. 1, 2 and 4."""

from __future__ import annotations

import math

import pytest
import torch

from glode.model import MORPH_PAD, SpanModel, subword_width_bucket
from glode.objectives import mask_tokens, masked_lm_loss, per_sentence_mean, soft_span_cross_entropy, span_cross_entropy

CLASSES = ["O", "PER", "LOC", "ORG", "MISC"]
HIDDEN = 32  # tiny_backbone


@pytest.fixture(scope="module")
def model(tiny_backbone):
    torch.manual_seed(0)
    return SpanModel.from_backbone(tiny_backbone, CLASSES).eval()


def toy_batch():
    """2 sentences (7 and 5 subwords, one padded), 4 spans."""
    input_ids = torch.tensor([[0, 500, 600, 700, 800, 900, 2], [0, 1000, 1100, 1200, 2, 1, 1]])
    attention_mask = (input_ids != 1).long()
    spans = dict(
        span_sentence=torch.tensor([0, 0, 1, 1]),
        span_start=torch.tensor([1, 2, 1, 3]),
        span_end=torch.tensor([1, 5, 2, 3]),
        span_width=torch.tensor([1, 3, 2, 1]),
        span_morph=torch.tensor([[2, MORPH_PAD, MORPH_PAD, MORPH_PAD], [1, 1, 2, MORPH_PAD], [0, 4, MORPH_PAD, MORPH_PAD], [3, MORPH_PAD, MORPH_PAD, MORPH_PAD]]),
    )
    spans["span_width_bucket"] = subword_width_bucket(spans["span_start"], spans["span_end"])
    return dict(input_ids=input_ids, attention_mask=attention_mask, **spans)


def test_span_vector_shapes(model):
    batch = toy_batch()
    out = model(**batch, return_projections=True)
    span_dim = 2 * HIDDEN + 50 + 100 + 100
    assert model.config.span_dim == span_dim
    assert out.span_vectors.shape == (4, span_dim)
    assert out.logits.shape == (4, len(CLASSES))
    assert out.projections.shape == (4, 128)
    torch.testing.assert_close(out.projections.norm(dim=-1), torch.ones(4))
    # z = [h_start; h_end; ...]: the first 2*hidden entries are the encoder's states at the span ends
    hidden = model.encode(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(out.span_vectors[1, :HIDDEN], hidden[0, 2])
    torch.testing.assert_close(out.span_vectors[1, HIDDEN : 2 * HIDDEN], hidden[0, 5])
    torch.testing.assert_close(out.span_vectors[2, :HIDDEN], hidden[1, 1])


def test_subword_width_bucket():
    start = torch.tensor([3, 3, 3, 3, 3, 3])
    end = torch.tensor([3, 4, 5, 6, 7, 30])
    assert subword_width_bucket(start, end).tolist() == [0, 1, 2, 3, 3, 3]


def test_morphology_embedding_is_a_sum_over_words(model):
    batch = toy_batch()
    z = model(**batch).span_vectors
    table = model.morph_embedding.weight
    morph = z[:, 2 * HIDDEN + 150 :]
    torch.testing.assert_close(morph[0], table[2])
    torch.testing.assert_close(morph[1], table[1] + table[1] + table[2])
    torch.testing.assert_close(morph[2], table[0] + table[4])
    assert torch.count_nonzero(table[MORPH_PAD]) == 0  # the padding slot adds nothing
    # the widths: subword bucket 3 (positions 2..5) and 3 words for span 1
    torch.testing.assert_close(z[1, 2 * HIDDEN : 2 * HIDDEN + 50], model.subword_width_embedding.weight[3])
    torch.testing.assert_close(z[1, 2 * HIDDEN + 50 : 2 * HIDDEN + 150], model.word_width_embedding.weight[2])


def test_mask_tokens_never_touches_specials_or_padding_and_hits_the_rate():
    g = torch.Generator().manual_seed(0)
    n, length = 400, 60
    lengths = torch.randint(5, length + 1, (n,), generator=g)
    ids = torch.randint(5, 250000, (n, length), generator=g)
    attention = (torch.arange(length)[None, :] < lengths[:, None]).long()
    ids[:, 0] = 0
    ids[torch.arange(n), lengths - 1] = 2
    ids[attention == 0] = 1
    masked, mask = mask_tokens(ids, attention, mask_token_id=250001, special_token_ids=[0, 1, 2], rate=0.25, generator=torch.Generator().manual_seed(1))
    assert not mask[attention == 0].any()
    assert not mask[:, 0].any() and not mask[torch.arange(n), lengths - 1].any()
    assert (masked[mask] == 250001).all() and torch.equal(masked[~mask], ids[~mask])
    maskable = int(attention.sum() - 2 * n)
    rate = mask.sum().item() / maskable
    assert abs(rate - 0.25) < 4 * math.sqrt(0.25 * 0.75 / maskable)  # ~ +-0.011 for ~12k tokens
    again, mask_again = mask_tokens(ids, attention, 250001, [0, 1, 2], 0.25, torch.Generator().manual_seed(1))
    assert torch.equal(mask, mask_again) and torch.equal(masked, again)


def test_eq1_and_eq4_average_per_sentence_then_over_sentences():
    # Two classes, every span has logits [0, ln 3]: p = [1/4, 3/4].
    # CE(label 0) = ln 4 = 1.386294, CE(label 1) = ln(4/3) = 0.287682.
    # Sentence 0 has 3 spans with labels 0, 0, 1; sentence 1 has 1 span with label 1.
    #   sentence 0: (2 ln 4 + ln 4/3) / 3 = (2.772589 + 0.287682) / 3 = 1.020090
    #   sentence 1: ln 4/3 = 0.287682
    #   Eq. 1: (1.020090 + 0.287682) / 2 = 0.653886
    # (a flat mean over the 4 spans would give (2 ln 4 + 2 ln 4/3) / 4 = 0.836988)
    logits = torch.tensor([[0.0, math.log(3)]] * 4)
    labels = torch.tensor([0, 0, 1, 1])
    sentence = torch.tensor([0, 0, 0, 1])
    expected = ((2 * math.log(4) + math.log(4 / 3)) / 3 + math.log(4 / 3)) / 2
    assert span_cross_entropy(logits, labels, sentence, 2).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.653886, abs=1e-6)
    # Eq. 4 with soft targets: one-hot targets give Eq. 1 back ...
    one_hot = torch.nn.functional.one_hot(labels, 2).float()
    assert soft_span_cross_entropy(logits, one_hot, sentence, 2).item() == pytest.approx(expected, abs=1e-6)
    # ... and target [1/2, 1/2] on every span costs (ln 4 + ln 4/3) / 2 = 0.836988 per span,
    # so per sentence and overall too.
    half = torch.full((4, 2), 0.5)
    assert soft_span_cross_entropy(logits, half, sentence, 2).item() == pytest.approx((math.log(4) + math.log(4 / 3)) / 2, abs=1e-6)
    # a sentence of the batch without spans does not count in N
    assert span_cross_entropy(logits, labels, sentence, 3).item() == pytest.approx(expected, abs=1e-6)
    assert per_sentence_mean(torch.tensor([1.0, 3.0, 10.0]), torch.tensor([0, 0, 2]), 3).item() == pytest.approx(6.0)


def test_eq2_normalisations():
    # Vocabulary of 4; logits 0 except the target's, so CE = ln(3 + e^a) - a.
    # Masked tokens: two in sentence 0 (a = 0, 1), one in sentence 2 (a = 2); sentence 1 has
    # none. |X'| = 4, 3, 5 maskable tokens.
    a = torch.tensor([0.0, 1.0, 2.0])
    targets = torch.tensor([1, 2, 3])
    logits = torch.zeros(3, 4)
    logits[torch.arange(3), targets] = a
    ce = [math.log(3 + math.exp(x)) - x for x in (0.0, 1.0, 2.0)]  # 1.386294, 0.861994, 0.453018
    token_sentence = torch.tensor([0, 0, 2])
    lengths = torch.tensor([4, 3, 5])
    # authors: mean over the masked tokens = (1.386294 + 0.861994 + 0.453018) / 3 = 0.900435
    assert masked_lm_loss(logits, targets, token_sentence, lengths, "masked").item() == pytest.approx(sum(ce) / 3, abs=1e-6)
    # paper: 1/N sum_X 1/|X'| sum masked CE = ((1.386294 + 0.861994)/4 + 0 + 0.453018/5) / 3 = 0.217560
    paper = ((ce[0] + ce[1]) / 4 + 0.0 + ce[2] / 5) / 3
    assert masked_lm_loss(logits, targets, token_sentence, lengths, "tokens").item() == pytest.approx(paper, abs=1e-6)
    assert masked_lm_loss(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), lengths).item() == 0.0
    with pytest.raises(ValueError):
        masked_lm_loss(logits, targets, token_sentence, lengths, "words")


def test_mlm_decoder_is_tied_to_the_word_embeddings(model, tmp_path):
    embedding = model.encoder.get_input_embeddings().weight
    assert model.mlm_head.decoder.weight is embedding
    assert model.get_output_embeddings().weight is embedding
    # gradients of the MLM loss reach the (shared) embedding matrix
    m = SpanModel.from_backbone(model.config.backbone, CLASSES).train()
    batch = toy_batch()
    mask = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
    mask[0, 3] = True
    logits = m.masked_lm_logits(batch["input_ids"].masked_fill(mask, 250001), batch["attention_mask"], mask)
    assert logits.shape == (1, embedding.shape[0])
    masked_lm_loss(logits, batch["input_ids"][mask], torch.tensor([0]), torch.tensor([5])).backward()
    assert m.encoder.get_input_embeddings().weight.grad is not None
    assert m.mlm_head.bias.grad is not None
    # the tie survives saving and loading (the decoder is not stored twice)
    m.save_pretrained(tmp_path)
    loaded = SpanModel.from_pretrained(tmp_path)
    assert loaded.mlm_head.decoder.weight is loaded.encoder.get_input_embeddings().weight


def test_projection_receives_no_gradient_by_default(tiny_backbone):
    m = SpanModel.from_backbone(tiny_backbone, CLASSES).train()
    assert not m.projection.weight.requires_grad
    out = m(**toy_batch(), return_projections=True)
    assert not out.projections.requires_grad
    grouped = {id(p) for g in m.trainable_parameter_groups(0.01) for p in g["params"]}
    assert id(m.projection.weight) not in grouped and id(m.classifier.weight) in grouped
    trained = SpanModel.from_backbone(tiny_backbone, CLASSES, train_projection=True).train()
    out = trained(**toy_batch(), return_projections=True)
    out.projections.sum().backward()
    assert trained.projection.weight.grad is not None


def test_save_load_round_trip_gives_identical_outputs(model, tmp_path):
    from transformers import AutoModel

    model.save_pretrained(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors"} <= names
    loaded = SpanModel.from_pretrained(tmp_path).eval()
    assert loaded.config.classes == CLASSES and loaded.config.encoder_config["hidden_size"] == HIDDEN
    assert not loaded.projection.weight.requires_grad
    batch = toy_batch()
    with torch.no_grad():
        a, b = model(**batch, return_projections=True), loaded(**batch, return_projections=True)
        mask = batch["attention_mask"].bool() & (batch["input_ids"] > 2)
        mlm_a = model.masked_lm_logits(batch["input_ids"], batch["attention_mask"], mask)
        mlm_b = loaded.masked_lm_logits(batch["input_ids"], batch["attention_mask"], mask)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.projections, b.projections) and torch.equal(mlm_a, mlm_b)
    # registered with the Auto classes, and rebuilt without the original backbone directory
    assert isinstance(AutoModel.from_pretrained(tmp_path), SpanModel)


def test_freeze_encoder_parts(tiny_backbone):
    m = SpanModel.from_backbone(tiny_backbone, CLASSES)
    m.freeze_encoder_parts(train_top_layers=1)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert any(".layer.1." in n for n in trainable) and not any(".layer.0." in n for n in trainable)
    assert "encoder.embeddings.word_embeddings.weight" not in trainable
    assert {"classifier.weight", "morph_embedding.weight", "mlm_head.bias"} <= trainable
    m = SpanModel.from_backbone(tiny_backbone, CLASSES)
    m.freeze_encoder_parts(freeze_word_embeddings=True)
    assert not m.encoder.get_input_embeddings().weight.requires_grad
    assert m.encoder.embeddings.position_embeddings.weight.requires_grad


def test_encoder_layers_keeps_the_bottom_layers(tiny_backbone):
    """encoder_layers=1 keeps layer 0 of the 2-layer backbone, with its pretrained weights."""
    from transformers import AutoModel

    full = AutoModel.from_pretrained(str(tiny_backbone))
    shallow = SpanModel.from_backbone(tiny_backbone, CLASSES, encoder_layers=1)
    assert shallow.encoder.config.num_hidden_layers == 1
    assert len(shallow.encoder.encoder.layer) == 1
    torch.testing.assert_close(shallow.encoder.encoder.layer[0].state_dict(), full.encoder.layer[0].state_dict())
    with pytest.raises(ValueError, match="encoder_layers 3 > the 2 layers"):
        SpanModel.from_backbone(tiny_backbone, CLASSES, encoder_layers=3)


def test_shallow_model_saves_and_reloads(tiny_backbone, tmp_path):
    shallow = SpanModel.from_backbone(tiny_backbone, CLASSES, encoder_layers=1)
    shallow.save_pretrained(tmp_path / "m")
    reloaded = SpanModel.from_pretrained(str(tmp_path / "m"))
    assert reloaded.encoder.config.num_hidden_layers == 1
    torch.testing.assert_close(reloaded.state_dict(), shallow.state_dict())


def test_load_tokenizer_tokenizes_as_auto_tokenizer(tiny_backbone):
    """The direct fast-tokenizer load must give AutoTokenizer's ids, word ids and special tokens."""
    from transformers import AutoTokenizer

    from glode.model import _cached_tokenizer

    fast = _cached_tokenizer(str(tiny_backbone), ("uncached",))
    auto = AutoTokenizer.from_pretrained(str(tiny_backbone))
    words = [["Schröder", "visitó", "Nueva", "York", "."], ["मुंबई", "भारत", "में", "है"], ["東京", "は", "大きい"], ["<mask>", "naïve", "co-operation", "U.S.A."]]
    a = auto(words, is_split_into_words=True, truncation=True, max_length=16)
    b = fast(words, is_split_into_words=True, truncation=True, max_length=16)
    for i in range(len(words)):
        assert a.input_ids[i] == b.input_ids[i]
        assert a.word_ids(i) == b.word_ids(i)
    for name in ("mask_token_id", "pad_token_id", "cls_token_id", "sep_token_id", "unk_token_id", "model_max_length"):
        assert getattr(fast, name) == getattr(auto, name), name
    assert len(fast) == len(auto)


def test_pretrained_mlm_head_is_loaded_where_the_checkpoint_has_one(tiny_backbone, tmp_path):
    """An XLM-R checkpoint's `lm_head.*` becomes the span model's MLM head (as in the authors'
    model, which subclasses RoBERTa); an encoder-only checkpoint (e5) keeps a fresh head."""
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    from glode.model import pretrained_mlm_head_state

    torch.manual_seed(1)
    config = XLMRobertaConfig(vocab_size=300, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                              max_position_embeddings=64, type_vocab_size=1, pad_token_id=1)
    mlm = XLMRobertaForMaskedLM(config)
    with torch.no_grad():
        mlm.lm_head.bias.uniform_(-1, 1)
    mlm.save_pretrained(tmp_path / "xlmr")
    model = SpanModel.from_backbone(tmp_path / "xlmr", CLASSES)
    saved = mlm.lm_head.state_dict()
    for ours, theirs in (("dense.weight", "dense.weight"), ("dense.bias", "dense.bias"), ("layer_norm.weight", "layer_norm.weight"), ("bias", "bias")):
        assert torch.equal(model.mlm_head.state_dict()[ours], saved[theirs]), ours
    assert model.mlm_head.decoder.weight is model.encoder.get_input_embeddings().weight  # still tied
    # the encoder-only checkpoint: no head to load, the fresh one stays
    assert pretrained_mlm_head_state(tiny_backbone) is None
    torch.manual_seed(0)
    fresh = SpanModel.from_backbone(tiny_backbone, CLASSES)
    assert torch.equal(fresh.mlm_head.bias, torch.zeros_like(fresh.mlm_head.bias))


def test_damaged_saved_model_names_its_directory_and_the_stage_to_rerun(model, tmp_path):
    """A span model directory is checked as a backbone is, but it is not rebuilt by `glode backbone`."""
    from glode.backbone import BackboneError
    from glode.model import load_span_model

    out = tmp_path / "saved"
    model.save_pretrained(out)
    (out / "model.safetensors").write_bytes(b"")
    with pytest.raises(BackboneError) as err:
        load_span_model(out)
    message = str(err.value)
    assert message.startswith(f"{out}: model.safetensors is empty")
    assert "run that stage again" in message and "glode backbone" not in message
