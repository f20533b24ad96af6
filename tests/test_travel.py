"""`glode travel`: pack a (tiny, hand-written) E5S1 backbone with some embedding rows kept,
unpack it, and check that every tensor equals the local build on the kept rows."""

from __future__ import annotations

import json
import lzma

import numpy as np
import pandas as pd
import pytest
from test_backbone import TINY_PIECES, expected_hf_name, write_tiny_e5s1

from glode import backbone, travel
from glode.io import GlodeInputError, write_parquet


@pytest.fixture
def tiny(tmp_path):
    """A tiny E5S1 file and a fast-tokenizer file with the same pieces."""
    from tokenizers import Tokenizer
    from tokenizers.models import Unigram

    weights = tmp_path / "tiny.bin"
    expected = write_tiny_e5s1(weights)
    tokenizer_json = tmp_path / "tokenizer.json"
    Tokenizer(Unigram([(p, -float(i)) for i, p in enumerate(TINY_PIECES)], unk_id=3)).save(str(tokenizer_json))
    return weights, tokenizer_json, expected


def test_pack_then_unpack_equals_the_local_build_on_kept_rows(tiny, tmp_path):
    from safetensors.numpy import load_file

    weights, tokenizer_json, expected = tiny
    keep = np.array([0, 1, 2, 3, 6])
    manifest = travel.pack(weights, tokenizer_json, keep, tmp_path / "pack", ["test/xx"])
    assert manifest["kept_rows"] == 5 and manifest["kept_ids"] == keep.tolist() and manifest["source_sha256"] == backbone.E5S1File(weights).sha256
    travel.unpack(tmp_path / "pack", tmp_path / "backbone")
    rebuilt = load_file(str(tmp_path / "backbone/model.safetensors"))
    for name, values in expected.items():
        hf = expected_hf_name(name)
        if name == "emb.word":
            assert np.array_equal(rebuilt[hf][keep], values[keep])
            dropped = np.setdiff1d(np.arange(len(values)), keep)
            assert not rebuilt[hf][dropped].any()  # never looked up: zero rows
        else:
            assert np.array_equal(rebuilt[hf], values), name
    # the 4-bit layout travels: the pack holds the E5S1 file with only the dropped rows changed
    packed = lzma.decompress((tmp_path / "pack" / travel.WEIGHTS_FILE).read_bytes())
    original = weights.read_bytes()
    word = backbone.E5S1File(weights).entries["emb.word"]
    start, end = word.offset, word.offset + word.nbytes
    assert len(packed) == len(original) and packed[:start] == original[:start] and packed[end:] == original[end:]
    row = word.nbytes // 12
    assert all(packed[start + i * row : start + (i + 1) * row] == original[start + i * row : start + (i + 1) * row] for i in keep)


def test_a_tampered_pack_is_refused_and_leaves_no_backbone(tiny, tmp_path):
    weights, tokenizer_json, _ = tiny
    travel.pack(weights, tokenizer_json, np.arange(12), tmp_path / "pack", ["test/xx"])
    manifest = json.loads((tmp_path / "pack" / travel.MANIFEST_FILE).read_text())
    manifest["tensor_sha256"]["embeddings.LayerNorm.bias"] = "0" * 64
    (tmp_path / "pack" / travel.MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(GlodeInputError, match=r"differs from the local build in \['embeddings.LayerNorm.bias'\]"):
        travel.unpack(tmp_path / "pack", tmp_path / "backbone")
    assert not (tmp_path / "backbone").exists()


def test_coverage_check_names_a_file_that_needs_a_dropped_row(tiny, tmp_path):
    from glode.tokenizer import load_offline_tokenizer

    weights, tokenizer_json, _ = tiny
    tokenizer = load_offline_tokenizer(tokenizer_json=tokenizer_json)
    sentences = tmp_path / "s.parquet"
    write_parquet(pd.DataFrame({"sent_id": [0], "line": [1], "tokens": [["a", "b"]]}), sentences, {"tokenisation": "words", "labeled": False})
    from glode.vocab import corpus_piece_ids

    needed = corpus_piece_ids([["a", "b"]], tokenizer)
    travel.pack(weights, tokenizer_json, needed, tmp_path / "pack", ["test/xx"])
    assert travel.check_coverage(tmp_path / "pack", [sentences], tokenizer) == len(needed)
    travel.pack(weights, tokenizer_json, np.array([0, 1, 2, 3]), tmp_path / "small", ["test/xx"])
    with pytest.raises(GlodeInputError, match=r"s.parquet: uses \d+ word pieces whose embedding rows the pack"):
        travel.check_coverage(tmp_path / "small", [sentences], tokenizer)
