"""A tiny random backbone and random span predictions, for the tests (tests/conftest.py) and the
benchmarks (benchmarks/).

Not used by the pipeline itself.
"""

from __future__ import annotations

from pathlib import Path

from glode.span_limit import DEFAULT_MAX_SPAN_LEN


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


def random_span_predictions(n_sentences: int, n_words: int, classes: list[str], max_span_len: int = DEFAULT_MAX_SPAN_LEN, seed: int = 1):
    """Span predictions as `glode pseudo-label` writes them (`sent_id`, `start`, `end`, `p_<class>`),
    for every span of <= `max_span_len` words of `n_sentences` sentences of `n_words` words, with
    class distributions drawn from a flat Dirichlet (so most spans' argmax is an entity)."""
    import numpy as np
    import pandas as pd

    bounds = np.array([(b, b + w - 1) for w in range(1, max_span_len + 1) for b in range(n_words - w + 1)])
    frame = pd.DataFrame(
        {"sent_id": np.repeat(np.arange(n_sentences), len(bounds)), "start": np.tile(bounds[:, 0], n_sentences), "end": np.tile(bounds[:, 1], n_sentences)}
    )
    probs = np.random.default_rng(seed).dirichlet(np.ones(len(classes)), size=len(frame)).astype(np.float32)
    for i, label in enumerate(classes):
        frame[f"p_{label}"] = probs[:, i]
    return frame
