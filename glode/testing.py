"""A tiny random backbone, for the tests (tests/conftest.py) and the benchmarks (benchmarks/).

Not used by the pipeline itself.
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_backbone(
    out: Path | str,
    *,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    intermediate_size: int = 64,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised BERT (2 layers by default) with the real XLM-R tokenizer to `out`.

    Fast, and shaped like e5: the XLM-R vocabulary (250037 ids, pad id 1), one token type,
    512 positions, no pooler. The weights are drawn after `torch.manual_seed(seed)`.
    """
    import torch
    from transformers import BertConfig, BertModel

    from glode.tokenizer import save_offline_tokenizer

    out = Path(out)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=250037,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=512,
        type_vocab_size=1,
        pad_token_id=1,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(out)
    save_offline_tokenizer(out)
    return out
