"""The span model of paper section 3.1 and its MLM head (Eq. 2); the losses are in glode.objectives.

Shape of the model (docs/reference-notes.md, "Spans and the span model"):

    subwords --encoder--> H --> z_i = [h_start; h_end; w_sub; w_word; m]   (span_representation)
    z_i --dropout 0.2--> linear --> class logits (O first)                  (Eq. 1 / Eq. 4 losses)
    z_i --linear 128--> L2-normalise --> denoising space                    (section 3.2, Eqs. 6-9)
    H'  --dense, GELU, LayerNorm, decoder tied to the word embeddings--> vocabulary logits (Eq. 2)

The width part of z is the authors' two embeddings: the span's subword width (last minus
first subword position) in `max_span_len` semi-log buckets (50-d; `subword_width_bucket`), and
its word count 1..max_span_len (100-d). The morphology part sums one 100-d embedding per word's
case class (`glode.spans.morph_class`, 0..4) over the span's words; short spans are padded with
id 5, whose embedding is fixed at 0.

The 128-d projection: in the authors' code no loss ever reaches it, so it stays the random
projection it was initialised as. `train_projection=False` (default) reproduces that: its
weights are frozen and it is computed without autograd. `True` lets a future loss train it.

`dropout` (0.2) is the dropout on z before the classifier; the encoder keeps its own
configured dropout (0.1 for e5-small and XLM-R).

The encoder is any Hugging Face encoder (`AutoModel`). `SpanModel.from_backbone(path, classes)`
starts from pretrained weights; `save_pretrained` writes a standard directory (config.json with
the encoder's own config inside it, model.safetensors), and `from_pretrained` rebuilds the encoder
from that stored config, so loading never needs the hub or the original backbone directory.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from glode.backbone import check_if_local, explain_load_errors, is_local_path, local_load_options
from glode.span_limit import DEFAULT_MAX_SPAN_LEN

log = logging.getLogger(__name__)

# A saved span model is not rebuilt with `glode backbone`, but by the stage that wrote it.
SAVED_MODEL_REBUILD = "it was written by a glode stage (train-source, train-target): delete it and run that stage again (Snakemake reruns a missing output)"

MORPH_CLASSES = 5  # glode.spans.morph_class: upper, lower, title, digit, other
MORPH_PAD = MORPH_CLASSES  # padding id of the per-word morphology slots (zero embedding)


def subword_width_bucket(start: torch.Tensor, end: torch.Tensor, n_buckets: int = DEFAULT_MAX_SPAN_LEN) -> torch.Tensor:
    """Bucket of a span's subword width d = end - start (0 for a one-subword span), as the
    authors' span extractor buckets it (models/bert_model_spanner.py:28-32: allennlp's
    EndpointSpanExtractor, `num_width_embeddings=max_spanLen`, `bucket_widths=True`): d itself
    up to 4, then floor(log2 d) + 3 (5-7 -> 5, 8-15 -> 6, 16-31 -> 7, ...), clipped to
    n_buckets - 1. With the paper's 4 buckets this is a plain clip to 0..3."""
    width = (end - start).clamp(min=0)
    log_bucket = torch.log2(width.clamp(min=1).double()).floor().long() + 3
    return torch.where(width <= 4, width, log_bucket).clamp(max=n_buckets - 1)


class SpanModelConfig(PretrainedConfig):
    """Configuration of `SpanModel`: the encoder's own config (as a dict) plus the span heads."""

    model_type = "glode_span_model"

    def __init__(
        self,
        encoder_config: dict | None = None,
        classes: Sequence[str] | None = None,
        max_span_len: int = DEFAULT_MAX_SPAN_LEN,
        subword_width_buckets: int | None = None,
        subword_width_dim: int = 50,
        word_width_dim: int = 100,
        morph_dim: int = 100,
        dropout: float = 0.2,
        projection_dim: int = 128,
        train_projection: bool = False,
        initializer_range: float = 0.02,
        tie_word_embeddings: bool = True,
        **kwargs,
    ):
        self.encoder_config = dict(encoder_config or {})
        self.classes = list(classes) if classes is not None else ["O"]
        if not self.classes or self.classes[0] != "O":
            raise ValueError(f"classes must start with 'O', got {self.classes}")
        self.max_span_len = max_span_len
        # the authors size the subword-width buckets by the span limit (subword_width_bucket)
        self.subword_width_buckets = subword_width_buckets if subword_width_buckets is not None else max_span_len
        self.subword_width_dim = subword_width_dim
        self.word_width_dim = word_width_dim
        self.morph_dim = morph_dim
        self.dropout = dropout
        self.projection_dim = projection_dim
        self.train_projection = train_projection
        self.initializer_range = initializer_range
        self.tie_word_embeddings = tie_word_embeddings
        kwargs.setdefault("id2label", {i: c for i, c in enumerate(self.classes)})
        kwargs.setdefault("label2id", {c: i for i, c in enumerate(self.classes)})
        super().__init__(**kwargs)
        self.tie_word_embeddings = tie_word_embeddings

    @property
    def span_dim(self) -> int:
        """Width of z: 2 * hidden + subword width + word width + morphology."""
        return 2 * self.encoder_config["hidden_size"] + self.subword_width_dim + self.word_width_dim + self.morph_dim


def _pretrained_encoder(backbone: str, **kwargs) -> PreTrainedModel:
    """`AutoModel.from_pretrained`, without the pooler where the encoder has one (BERT-like)."""
    try:
        return AutoModel.from_pretrained(backbone, add_pooling_layer=False, **kwargs)
    except TypeError:
        return AutoModel.from_pretrained(backbone, **kwargs)


def build_encoder(encoder_config: dict) -> PreTrainedModel:
    """A randomly initialised `AutoModel` from a stored config dict (no hub, no weights file)."""
    values = dict(encoder_config)
    model_type = values.pop("model_type")
    config = AutoConfig.for_model(model_type, **values)
    try:  # BERT-like encoders: the pooler is unused, leave it out
        return AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:
        return AutoModel.from_config(config)


# Where BERT-style and RoBERTa-style checkpoints keep their MLM head, in MaskedLMHead's names
# (the decoder weight is the tied word embedding matrix, so it is not read).
_PRETRAINED_MLM_HEAD_KEYS = {
    "lm_head.dense.weight": "dense.weight", "lm_head.dense.bias": "dense.bias",
    "lm_head.layer_norm.weight": "layer_norm.weight", "lm_head.layer_norm.bias": "layer_norm.bias", "lm_head.bias": "bias",
    "cls.predictions.transform.dense.weight": "dense.weight", "cls.predictions.transform.dense.bias": "dense.bias",
    "cls.predictions.transform.LayerNorm.weight": "layer_norm.weight", "cls.predictions.transform.LayerNorm.bias": "layer_norm.bias",
    "cls.predictions.bias": "bias",
}


def _checkpoint_files(backbone: str | Path) -> list[Path]:
    """The weight files of a backbone directory (or of a cached hub model), safetensors first."""
    path = Path(backbone)
    if not path.is_dir():
        from transformers.utils import cached_file

        found = [cached_file(str(backbone), name, _raise_exceptions_for_missing_entries=False) for name in ("model.safetensors", "pytorch_model.bin")]
        return [Path(f) for f in found if f]
    files = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
    return files


def pretrained_mlm_head_state(backbone: str | Path) -> dict[str, torch.Tensor] | None:
    """The pretraining MLM head of a backbone checkpoint (XLM-R's `lm_head.*`, BERT's
    `cls.predictions.*`) as a MaskedLMHead state dict, or None when it has none (e5, any
    encoder-only checkpoint). Only those tensors are read."""
    state: dict[str, torch.Tensor] = {}
    for file in _checkpoint_files(backbone):
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():
                    name = _PRETRAINED_MLM_HEAD_KEYS.get(key.removeprefix("roberta.").removeprefix("bert."))
                    if name:
                        state[name] = f.get_tensor(key)
        else:
            for key, tensor in torch.load(file, map_location="cpu", weights_only=True).items():
                name = _PRETRAINED_MLM_HEAD_KEYS.get(key)
                if name:
                    state[name] = tensor
    if not state:
        return None
    missing = {"dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias", "bias"} - set(state)
    if missing:
        raise ValueError(f"{backbone}: incomplete pretrained MLM head, missing {sorted(missing)}")
    return state


def _encoder_layers(encoder: nn.Module) -> nn.ModuleList:
    """The transformer layers of a BERT/XLM-R-style encoder (`encoder.encoder.layer`)."""
    try:
        return encoder.encoder.layer
    except AttributeError:
        raise ValueError(f"{type(encoder).__name__} has no encoder.layer list: frozen-layer caching needs a BERT/XLM-R-style encoder") from None


class _PassThroughEmbeddings(nn.Module):
    """Stands in for the embeddings when the encoder's input already is a layer's output."""

    def forward(self, inputs_embeds: torch.Tensor | None = None, **_: object) -> torch.Tensor:
        return inputs_embeds


@contextlib.contextmanager
def _encoder_slice(encoder: nn.Module, start: int, stop: int | None, pass_through_embeddings: bool):
    """Run the encoder with only its layers[start:stop] (and, optionally, no embeddings). The
    encoder's own forward still builds the attention mask, so any attention implementation works."""
    owner = encoder.encoder
    layers, embeddings = _encoder_layers(encoder), encoder.embeddings
    owner.layer = nn.ModuleList(list(layers)[start:stop])
    if pass_through_embeddings:
        encoder.embeddings = _PassThroughEmbeddings()
    try:
        yield
    finally:
        owner.layer = layers
        encoder.embeddings = embeddings


class MaskedLMHead(nn.Module):
    """dense -> GELU -> LayerNorm -> decoder (weight = the encoder's word embeddings) + bias.

    The decoder's own weight is created on the meta device (no memory): `SpanModel` ties it to
    the word embedding matrix, so the head's only new vocabulary-sized tensor is the bias.
    """

    def __init__(self, hidden_size: int, vocab_size: int, layer_norm_eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.decoder = nn.Linear(hidden_size, vocab_size, bias=False, device="meta")
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden: torch.Tensor, vocab_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Vocabulary logits [n, vocab]; with `vocab_ids` (sorted piece ids) only those columns,
        [n, len(vocab_ids)] (`mlm_vocabulary: corpus`, glode.vocab): the same weights, fewer of them."""
        x = self.layer_norm(F.gelu(self.dense(hidden)))
        if vocab_ids is None:
            return self.decoder(x) + self.bias
        return F.linear(x, self.decoder.weight[vocab_ids], self.bias[vocab_ids])


def freeze_encoder(encoder: nn.Module, freeze_word_embeddings: bool = False, train_top_layers: int = 0) -> None:
    """`train_top_layers=N>0` trains only the encoder's top N layers (embeddings frozen);
    `freeze_word_embeddings` freezes the word embedding matrix (and with it a tied MLM decoder).
    Shared by the span model and the token classifier (glode.tokencls)."""
    n_layers = encoder.config.num_hidden_layers
    layer_re = re.compile(r"(?:^|\.)layers?\.(\d+)\.")
    if train_top_layers > 0:
        for name, param in encoder.named_parameters():
            match = layer_re.search(name)
            param.requires_grad_(bool(match) and int(match.group(1)) >= n_layers - train_top_layers)
    if freeze_word_embeddings or train_top_layers > 0:
        encoder.get_input_embeddings().weight.requires_grad_(False)


def adamw_parameter_groups(named_parameters, weight_decay: float, head_lr: float | None, encoder_prefix: str) -> list[dict]:
    """AdamW groups of the trainable parameters: decay on weight matrices, none on biases and
    LayerNorm weights (HF convention); with `head_lr`, the parts outside the encoder (names not
    starting with `encoder_prefix`: the fresh heads) get that learning rate. Shared by the span
    model and the token classifier (glode.tokencls), so that both train the same way."""
    groups: dict[tuple[bool, bool], list] = {}
    seen: set[int] = set()
    for name, param in named_parameters:
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        lowered = name.lower()
        no_decay = name.endswith("bias") or "layernorm" in lowered or "layer_norm" in lowered
        is_head = head_lr is not None and not name.startswith(encoder_prefix)
        groups.setdefault((no_decay, is_head), []).append(param)
    result = []
    for (no_decay, is_head), params in sorted(groups.items()):
        group = {"params": params, "weight_decay": 0.0 if no_decay else weight_decay}
        if is_head:
            group["lr"] = head_lr
        result.append(group)
    return result


@dataclass
class SpanModelOutput(ModelOutput):
    logits: torch.Tensor | None = None  # [n_spans, n_classes]
    span_vectors: torch.Tensor | None = None  # z, [n_spans, span_dim]
    projections: torch.Tensor | None = None  # L2-normalised 128-d projections of z (if asked for)


class SpanModel(PreTrainedModel):
    """Span classifier + denoising projection + tied MLM head over any HF encoder."""

    config_class = SpanModelConfig
    config: SpanModelConfig
    main_input_name = "input_ids"
    _supports_sdpa = True

    def __init__(self, config: SpanModelConfig):
        super().__init__(config)
        self.encoder = build_encoder(config.encoder_config)
        enc = self.encoder.config
        hidden = enc.hidden_size
        self.subword_width_embedding = nn.Embedding(config.subword_width_buckets, config.subword_width_dim)
        self.word_width_embedding = nn.Embedding(config.max_span_len, config.word_width_dim)
        self.morph_embedding = nn.Embedding(MORPH_CLASSES + 1, config.morph_dim, padding_idx=MORPH_PAD)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.span_dim, len(config.classes))
        self.projection = nn.Linear(config.span_dim, config.projection_dim)
        word_embeddings = self.encoder.get_input_embeddings()
        self.mlm_head = MaskedLMHead(hidden, word_embeddings.num_embeddings, getattr(enc, "layer_norm_eps", 1e-12))
        # Where the word embeddings live depends on the encoder; tell HF's tying machinery.
        embedding_name = next(n for n, p in self.encoder.named_parameters() if p is word_embeddings.weight)
        self._tied_weights_keys = {"mlm_head.decoder.weight": f"encoder.{embedding_name}"}
        self.post_init()
        self.tie_mlm_decoder()
        self.projection.requires_grad_(config.train_projection)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """HF loading, then re-tie the MLM decoder and re-freeze the projection (loading resets both).
        A local directory is checked first and never looked up on the hub (glode.backbone)."""
        name = pretrained_model_name_or_path
        for key, value in local_load_options(name, ("config", "weights"), SAVED_MODEL_REBUILD).items():
            kwargs.setdefault(key, value)
        with explain_load_errors(name, SAVED_MODEL_REBUILD):
            loaded = super().from_pretrained(name, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.tie_mlm_decoder()
        model.projection.requires_grad_(model.config.train_projection)
        return loaded

    # -- weights -------------------------------------------------------------------------------

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, MaskedLMHead):
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()

    def tie_mlm_decoder(self) -> None:
        """Make the MLM decoder weight *be* the encoder's word embedding parameter (idempotent)."""
        embedding = self.encoder.get_input_embeddings().weight
        if self.mlm_head.decoder.weight is not embedding:
            self.mlm_head.decoder.weight = embedding

    def tie_weights(self, *args, **kwargs):
        result = super().tie_weights(*args, **kwargs)
        if hasattr(self, "mlm_head"):
            self.tie_mlm_decoder()
        return result

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.mlm_head.decoder

    @property
    def classes(self) -> list[str]:
        return list(self.config.classes)

    @classmethod
    def from_backbone(cls, backbone: str | Path, classes: Sequence[str], encoder_layers: int = 0, **config_overrides) -> "SpanModel":
        """A span model whose encoder holds the pretrained weights of `backbone` (HF name or path).

        `encoder_layers=N>0` keeps only the backbone's bottom N transformer layers (a CPU-demo
        economy: every forward and backward pass costs about N/L of the full encoder's)."""
        local = local_load_options(backbone, ("config", "weights"))  # a clear error before the library's, and no hub look-up
        kwargs = {}
        if encoder_layers > 0:
            with explain_load_errors(backbone):
                available = AutoConfig.from_pretrained(str(backbone), **local).num_hidden_layers
            if encoder_layers > available:
                raise ValueError(f"encoder_layers {encoder_layers} > the {available} layers of backbone {backbone}")
            kwargs["num_hidden_layers"] = encoder_layers
        with explain_load_errors(backbone):
            pretrained = _pretrained_encoder(str(backbone), **local, **kwargs)
        config = SpanModelConfig(encoder_config=pretrained.config.to_dict(), classes=list(classes), **config_overrides)
        model = cls(config)
        model.encoder.load_state_dict(pretrained.state_dict(), strict=True)
        model.config.backbone = str(backbone)
        with explain_load_errors(backbone):
            head = pretrained_mlm_head_state(backbone)
        if head is not None:  # XLM-R and BERT checkpoints carry their pretraining MLM head: start from it, as the authors' model does
            model.mlm_head.load_state_dict(head, strict=False)
            log.info("MLM head: the pretrained one of %s", backbone)
        else:
            log.info("MLM head: freshly initialised (%s has none)", backbone)
        return model

    def freeze_encoder_parts(self, freeze_word_embeddings: bool = False, train_top_layers: int = 0) -> None:
        """CPU-demo economies (freeze_encoder, below); the span heads always train."""
        freeze_encoder(self.encoder, freeze_word_embeddings, train_top_layers)
        if not self.config.train_projection:
            self.projection.requires_grad_(False)

    def trainable_parameter_groups(self, weight_decay: float, head_lr: float | None = None) -> list[dict]:
        """AdamW groups: decay on weight matrices, none on biases and LayerNorm weights (HF convention).

        With `head_lr`, the freshly initialised parts outside the encoder (span classifier, width
        and morphology embeddings, MLM transform) get their own learning rate: a demo-scale run
        makes too few updates for them to leave their random start at the encoder's rate.
        """
        trained = ((n, p) for n, p in self.named_parameters() if self.config.train_projection or not n.startswith("projection."))
        return adamw_parameter_groups(trained, weight_decay, head_lr, encoder_prefix="encoder.")

    # -- frozen lower layers (cache_frozen_layers) -----------------------------------------------

    def frozen_depth(self) -> int:
        """How many bottom encoder layers are frozen, with the embeddings: the part whose output
        depends on nothing that trains, so it can be computed once (glode.frozen_states)."""
        if not hasattr(self.encoder, "embeddings") or any(p.requires_grad for p in self.encoder.embeddings.parameters()):
            return 0
        depth = 0
        for layer in _encoder_layers(self.encoder):
            if any(p.requires_grad for p in layer.parameters()):
                break
            depth += 1
        return depth

    def frozen_weights_digest(self, depth: int) -> str:
        """sha256 of the embeddings' and the bottom `depth` layers' weights: ties cached hidden
        states to the weights that made them."""
        digest = hashlib.sha256()
        modules = [("embeddings", self.encoder.embeddings)] + [(f"layer.{i}", layer) for i, layer in enumerate(_encoder_layers(self.encoder)[:depth])]
        for prefix, module in modules:
            for name, tensor in sorted(module.state_dict().items()):
                digest.update(f"{prefix}.{name}".encode())
                digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def encode_bottom(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, depth: int) -> torch.Tensor:
        """The hidden states after the embeddings and the bottom `depth` layers, [batch, seq, hidden]."""
        with _encoder_slice(self.encoder, 0, depth, pass_through_embeddings=False):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def encode_top(self, hidden: torch.Tensor, attention_mask: torch.Tensor, depth: int) -> torch.Tensor:
        """The encoder's last hidden states from `encode_bottom`'s output: layers depth.. only."""
        with _encoder_slice(self.encoder, depth, None, pass_through_embeddings=True):
            return self.encoder(inputs_embeds=hidden, attention_mask=attention_mask).last_hidden_state

    # -- forward pieces ------------------------------------------------------------------------

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, frozen_hidden: torch.Tensor | None = None, frozen_depth: int = 0) -> torch.Tensor:
        """H = PLM(X): the encoder's last hidden states, [batch, seq, hidden]; from the cached
        output of the frozen bottom `frozen_depth` layers when `frozen_hidden` is given."""
        if frozen_hidden is not None and frozen_depth > 0:
            return self.encode_top(frozen_hidden.to(self.encoder.dtype), attention_mask, frozen_depth)
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def span_representation(
        self,
        hidden: torch.Tensor,
        span_sentence: torch.Tensor,
        span_start: torch.Tensor,
        span_end: torch.Tensor,
        span_width: torch.Tensor,
        span_width_bucket: torch.Tensor,
        span_morph: torch.Tensor,
    ) -> torch.Tensor:
        """Section 3.1: z_i = [h_{b_i}; h_{e_i}; l_i; m_i], one row per span of the batch.

        `span_sentence` is each span's row in `hidden`; `span_start`/`span_end` its first and last
        subword positions; l_i = [subword-width bucket embedding; word-count embedding]
        (`span_width` in words, 1..max_span_len); m_i = the sum of the per-word case-class
        embeddings of `span_morph` [n_spans, max_span_len] (padding id 5 adds zero).
        """
        h_start = hidden[span_sentence, span_start]
        h_end = hidden[span_sentence, span_end]
        width_sub = self.subword_width_embedding(span_width_bucket)
        width_word = self.word_width_embedding(span_width - 1)
        morph = self.morph_embedding(span_morph).sum(dim=1)
        return torch.cat([h_start, h_end, width_sub.to(h_start.dtype), width_word.to(h_start.dtype), morph.to(h_start.dtype)], dim=-1)

    def classify(self, span_vectors: torch.Tensor) -> torch.Tensor:
        """p_i before the softmax: a linear classifier on the dropped-out span vector."""
        return self.classifier(self.dropout(span_vectors))

    def project(self, span_vectors: torch.Tensor) -> torch.Tensor:
        """The denoising space: L2-normalised 128-d linear projection of z (no gradient unless trained)."""
        if self.config.train_projection:
            return F.normalize(self.projection(span_vectors).float(), dim=-1)
        with torch.no_grad():
            return F.normalize(self.projection(span_vectors.detach()).float(), dim=-1)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        span_sentence: torch.Tensor,
        span_start: torch.Tensor,
        span_end: torch.Tensor,
        span_width: torch.Tensor,
        span_width_bucket: torch.Tensor,
        span_morph: torch.Tensor,
        return_projections: bool = False,
        frozen_hidden: torch.Tensor | None = None,
        frozen_depth: int = 0,
        **_: object,
    ) -> SpanModelOutput:
        hidden = self.encode(input_ids, attention_mask, frozen_hidden, frozen_depth)
        z = self.span_representation(hidden, span_sentence, span_start, span_end, span_width, span_width_bucket, span_morph)
        logits = self.classify(z)
        return SpanModelOutput(logits=logits, span_vectors=z, projections=self.project(z) if return_projections else None)

    def masked_lm_logits(self, masked_input_ids: torch.Tensor, attention_mask: torch.Tensor, mask: torch.Tensor, vocab_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Vocabulary logits p'_i of Eq. 2, only at the masked positions (row-major order of `mask`);
        over `vocab_ids` only when given (then column j is piece vocab_ids[j]).

        Tokens that are not masked contribute nothing to Eq. 2 (the indicator), so their
        250k-way logits are never computed.
        """
        hidden = self.encode(masked_input_ids, attention_mask)
        return self.mlm_head(hidden[mask], vocab_ids)


# `AutoConfig` / `AutoModel` (and `AutoTokenizer`, which reads config.json) know the saved directories.
AutoConfig.register(SpanModelConfig.model_type, SpanModelConfig, exist_ok=True)
AutoModel.register(SpanModelConfig, SpanModel, exist_ok=True)


@functools.lru_cache(maxsize=4)
def _cached_tokenizer(name_or_path: str, stamp: tuple):
    path = Path(name_or_path)
    if (path / "tokenizer.json").is_file() and (path / "tokenizer_config.json").is_file():
        # A directory with a fast-tokenizer file: wrap it directly. Through AutoTokenizer, the
        # model-specific class re-parses the 250k-piece vocabulary in Python (~2 s more per
        # process); the tokenization is the same (tests/test_model.py compares them).
        from transformers import PreTrainedTokenizerFast

        settings = json.loads((path / "tokenizer_config.json").read_text())
        special = {k: v["content"] if isinstance(v, dict) else v for k, v in settings.items() if k.endswith("_token") and isinstance(v, (str, dict))}
        # from the file, not from a Tokenizer object: the object is deep-copied (~2 s per process)
        return PreTrainedTokenizerFast(tokenizer_file=str(path / "tokenizer.json"), model_max_length=settings.get("model_max_length", 512), **special)
    from transformers import AutoTokenizer

    local = {"local_files_only": True} if is_local_path(name_or_path) else {}  # checked by load_tokenizer
    return AutoTokenizer.from_pretrained(name_or_path, **local)


def load_tokenizer(name_or_path: str | Path, rebuild: str | None = None):
    """`AutoTokenizer.from_pretrained`, cached per process (keyed on the directory's tokenizer files'
    modification times): the 250k-piece XLM-R tokenizer takes seconds to load, and tests and
    notebooks call several stages in one process. Callers must not change its settings.
    A local directory is checked first (glode.backbone; `rebuild` is the hint of its error)."""
    check_if_local(name_or_path, ("tokenizer",), rebuild)
    path = Path(name_or_path)
    stamp = tuple(sorted((f.name, f.stat().st_mtime_ns) for f in path.glob("tokenizer*"))) if path.is_dir() else ()
    with explain_load_errors(name_or_path, rebuild):
        return _cached_tokenizer(str(name_or_path), stamp)


def load_span_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[SpanModel, object]:
    """A saved span model (eval mode, on `device`) and the tokenizer saved next to it."""
    model = SpanModel.from_pretrained(str(path))
    return model.to(device).eval(), load_tokenizer(path, SAVED_MODEL_REBUILD)
