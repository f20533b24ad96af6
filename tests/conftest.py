"""Shared fixtures: the project's paths, the real data root and a tiny random backbone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("GLODE_DATA_ROOT", PROJECT_ROOT.parent / "shared" / "datasets")).resolve()
OFFLINE_BACKBONE = Path(os.environ.get("GLODE_BACKBONE", PROJECT_ROOT / "resources" / "multilingual-e5-small"))


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "MANIFEST.tsv").exists():
        pytest.fail(f"benchmark data not found at {DATA_ROOT} (set GLODE_DATA_ROOT)")
    return DATA_ROOT


@pytest.fixture(scope="session")
def offline_backbone() -> Path:
    """The real multilingual-e5-small directory, built by `make setup` (`glode backbone`)."""
    if not (OFFLINE_BACKBONE / "config.json").exists():
        pytest.fail(f"offline backbone not built at {OFFLINE_BACKBONE}: run `make setup` first")
    return OFFLINE_BACKBONE


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT with the real XLM-R tokenizer: fast, and shaped like e5."""
    import torch
    from transformers import BertConfig, BertModel

    from glode.tokenizer import save_offline_tokenizer

    out = tmp_path_factory.mktemp("tiny_backbone")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=250037,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        type_vocab_size=1,
        pad_token_id=1,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(out)
    save_offline_tokenizer(out)
    return out
