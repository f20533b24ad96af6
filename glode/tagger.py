"""`glode.Tagger`: a trained glode model as a Python object that tags raw text.

    from glode import Tagger
    tagger = Tagger.load("results/target/conll/de/glode/seed1/model", device="cpu")
    tagger.tag(["Angela Merkel besuchte Paris.", "..."])
    # [{"text": ..., "tokens": [...], "entities": [{"start_char": 0, "end_char": 13,
    #   "start_token": 0, "end_token": 2, "type": "PER", "text": "Angela Merkel", "prob": 0.97}]}, ...]

The model is loaded once; texts are split into sentences and words by the splitter the model
records (glode.textsplit: spaCy's rules for its language, the same as its raw training text
went through), sentences longer than the encoder window are cut into pieces that fit, and all
sentences of all texts are tagged in length-sorted batches. Offsets index the given text;
`end_token` and `end_char` are exclusive; token indices count the text's words over all its
sentences.

A span model (train-source, train-target) is decoded exactly as evaluation decodes: its class
distribution over every candidate span, then non-overlapping entities, most probable first
(`glode.evaluate.decode_entities`). A token classifier (train-tokencls, the `source-tokencls`
baseline) gives repaired BIO tags; an entity's `prob` is the mean probability of its words' tags.
`glode tag` and the spaCy component `glode_ner` are thin layers over this class.

Loading prints no progress bar (transformers' "Loading weights" bar is off for the load only),
and the spaCy splitter is built on the first raw text. What a fresh process pays to load and tag
is measured in docs/benchmarks.md (benchmarks/bench_tagger_startup.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from glode.io import TRAINING_SUMMARY_FILE, GlodeInputError
from glode.textsplit import SplitReport, SplitSentence, Splitter, split_within_window

log = logging.getLogger(__name__)

DEFAULT_MAX_SEQ_LEN = 128
MODEL_DIR_HINT = (
    "a glode model directory is the `model/` that `glode train-source`, `glode train-target` or `glode train-tokencls` writes "
    "(config.json, the weights, the tokenizer and glode_training.json)"
)

Entity = tuple[int, int, str, float]  # (first word, last word inclusive, type, probability)


@dataclass
class TaggedText:
    """One input text and its sentences: words with [start, end) character offsets into `text`."""

    text: str
    sentences: list[SplitSentence]
    id: Any = None

    @property
    def tokens(self) -> list[str]:
        return [w for s in self.sentences for w in s.words]


def text_from_words(words: Sequence[str], id: Any = None) -> TaggedText:
    """A pre-tokenised sentence (CoNLL): its text is the words joined by single spaces."""
    starts, position = [], 0
    for word in words:
        starts.append(position)
        position += len(word) + 1
    return TaggedText(" ".join(words), [SplitSentence(list(words), starts, [b + len(w) for b, w in zip(starts, words)])], id)


# -- the model directory -------------------------------------------------------------------------


def training_summary(model_dir: Path) -> dict:
    """The model directory's glode_training.json (every training stage writes it), or {}."""
    summary_file = Path(model_dir) / TRAINING_SUMMARY_FILE
    return json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.is_file() else {}


def model_architecture(model_dir: Path) -> str:
    """`span` (glode_span_model) or `tokencls` (train-tokencls); a clear error for anything else."""
    from glode.model import SpanModelConfig

    path = Path(model_dir)
    if not path.is_dir():
        raise GlodeInputError(path, f"is not a directory; {MODEL_DIR_HINT}")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise GlodeInputError(path, f"has no config.json, so it is not a model directory; {MODEL_DIR_HINT}")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise GlodeInputError(config_file, f"is not valid JSON ({err}); {MODEL_DIR_HINT}") from None
    if not isinstance(config, dict):
        raise GlodeInputError(path, f"config.json is not a Hugging Face model config; {MODEL_DIR_HINT}")
    if config.get("model_type") == SpanModelConfig.model_type:
        missing = [key for key in ("classes", "encoder_config", "max_span_len") if key not in config]
        if missing:
            raise GlodeInputError(path, f"config.json lacks the span-model fields {missing}; {MODEL_DIR_HINT}")
        return "span"
    if training_summary(path).get("system") == "source-tokencls":
        return "tokencls"
    what = f"a Hugging Face '{config.get('model_type')}' model (a backbone?)" if config.get("model_type") else "not a Hugging Face model config"
    raise GlodeInputError(path, f"config.json describes {what}, not a glode model; {MODEL_DIR_HINT}")


def span_settings_of(model_dir: Path, model_max_span_len: int, max_span_len: int | None = None, max_seq_len: int | None = None, summary: dict | None = None):
    """The spans the model was trained on (glode_training.json's `span_settings`; `summary`: that
    file, already read), else the arguments: evaluation enumerates spans the same way."""
    from glode.spans import SpanSettings

    saved = (training_summary(model_dir) if summary is None else summary).get("span_settings")
    if saved:
        settings = SpanSettings(int(saved["max_span_len"]), int(saved["max_seq_len"]))
        given = {"--max-span-len": (max_span_len, settings.max_span_len), "--max-seq-len": (max_seq_len, settings.max_seq_len)}
        for flag, (value, used) in given.items():
            if value is not None and value != used:
                log.warning("%s %d ignored: the model was trained with %d (%s)", flag, value, used, Path(model_dir) / TRAINING_SUMMARY_FILE)
    else:
        # the width embedding has model_max_span_len rows: that is the longest span it can score
        settings = SpanSettings(model_max_span_len if max_span_len is None else max_span_len, DEFAULT_MAX_SEQ_LEN if max_seq_len is None else max_seq_len)
    if not 1 <= settings.max_span_len <= model_max_span_len:
        raise GlodeInputError(model_dir, f"max_span_len {settings.max_span_len}: the model scores spans of 1..{model_max_span_len} words")
    if settings.max_seq_len < 3:
        raise ValueError(f"--max-seq-len {settings.max_seq_len}: the window needs <s>, a subword and </s>")
    return settings


def splitter_language(summary: dict) -> str:
    """The language whose rules split raw text for this model: the one recorded (glode.textsplit
    splitter_record), else the multi-language rules (a model written before glode recorded it)."""
    return (summary.get("splitter") or {}).get("lang") or "xx"


@contextlib.contextmanager
def quiet_library_output(quiet: bool) -> Iterator[None]:
    """With `quiet`, no transformers progress bars ("Loading weights") or info messages."""
    if not quiet:
        yield
        return
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """transformers' (and huggingface_hub's) progress bars off for the block only, as they were after
    it: loading a model for tagging prints no "Loading weights" bar, training keeps its bars."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


# -- the tagger ----------------------------------------------------------------------------------


class Tagger:
    """A loaded glode model that tags texts; build it with `Tagger.load`."""

    def __init__(self, model_dir: Path, kind: str, model, tokenizer, device, precision: str, batch_size: int, quiet: bool, summary: dict,
                 settings=None, tokenisation: str = "words", labels: list[str] | None = None, max_seq_len: int = DEFAULT_MAX_SEQ_LEN):
        self.model_dir, self.kind, self.model, self.tokenizer = Path(model_dir), kind, model, tokenizer
        self.device, self.precision, self.batch_size, self.quiet = device, precision, batch_size, quiet
        self.settings, self.tokenisation, self.labels = settings, tokenisation, labels
        self.max_seq_len = settings.max_seq_len if settings is not None else max_seq_len
        self.summary = summary  # the model directory's glode_training.json
        self._splitter: Splitter | None = None

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "auto", precision: str = "auto", batch_size: int = 32, quiet: bool = False,
             max_span_len: int | None = None, max_seq_len: int | None = None, tokenisation: str | None = None) -> "Tagger":
        """Load a model directory once. `device`: auto (CUDA if available), cpu, cuda, cuda:N;
        `precision`: auto (bf16 on CUDA), bf16, fp32; `quiet`: no progress bars or info."""
        import re

        from glode.device import DEVICE_PATTERN, describe_device, select_device

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not re.fullmatch(DEVICE_PATTERN, device):
            raise ValueError(f"device {device!r}: must match {DEVICE_PATTERN}")
        model_dir = Path(model_dir)
        kind = model_architecture(model_dir)
        torch_device = select_device(device)
        log.info("device: %s", describe_device(torch_device, precision))
        with quiet_library_output(quiet), no_progress_bars():
            if kind == "tokencls":
                from glode.tokencls import load_token_classifier

                model, tokenizer, labels, window = load_token_classifier(model_dir, torch_device)
                return cls(model_dir, kind, model, tokenizer, torch_device, precision, batch_size, quiet, training_summary(model_dir), labels=labels, max_seq_len=window)
            from glode.model import load_span_model

            model, tokenizer = load_span_model(model_dir, torch_device)
        summary = training_summary(model_dir)
        settings = span_settings_of(model_dir, model.config.max_span_len, max_span_len, max_seq_len, summary)
        mode = tokenisation or summary.get("target_tokenisation") or "words"
        return cls(model_dir, kind, model, tokenizer, torch_device, precision, batch_size, quiet, summary, settings=settings, tokenisation=mode)

    @property
    def splitter(self) -> Splitter:
        """The model's splitter, built on first use (texts given as words never need it)."""
        if self._splitter is None:
            self._splitter = Splitter(splitter_language(self.summary))
        return self._splitter

    def split(self, texts: Sequence[str]) -> list[TaggedText]:
        """Texts as sentences of words with offsets, each sentence cut to the encoder window."""
        report = SplitReport()
        split = [TaggedText(text, sentences) for text, sentences in zip(texts, split_within_window(self.splitter, texts, self.tokenizer, self.max_seq_len, report))]
        report.warn("glode tagger", self.max_seq_len)
        return split

    def tag(self, texts: Sequence[str]) -> list[dict]:
        """One record per text: `text`, `tokens` and `entities` (see the module docstring)."""
        if isinstance(texts, str):
            raise TypeError("Tagger.tag takes a list of texts; wrap a single text in a list")
        texts = list(texts)
        check_texts(texts)
        return self.tag_texts(self.split(texts))

    def tag_texts(self, texts: Sequence[TaggedText]) -> list[dict]:
        """Records of texts already split into sentences and words (CoNLL input, one's own splitter)."""
        sentences = [s.words for t in texts for s in t.sentences]
        found = iter(self.entities(sentences))
        return [text_record(text, [next(found) for _ in text.sentences]) for text in texts]

    def entities(self, sentences: Sequence[Sequence[str]]) -> list[list[Entity]]:
        """Per sentence of words, its entities (first word, last word inclusive, type, prob)."""
        if not any(sentences):
            return [[] for _ in sentences]
        with quiet_library_output(self.quiet):
            if self.kind == "tokencls":
                return self._tokencls_entities(sentences)
            return self._span_entities(sentences)

    def _span_entities(self, sentences: Sequence[Sequence[str]]) -> list[list[Entity]]:
        import pandas as pd

        from glode.batching import build_items
        from glode.evaluate import decode_entities
        from glode.pseudo_label import predict_spans, predictions_frame
        from glode.spans import build_span_table

        # sent_id = position in `sentences`; sentences without words never reach the model
        frame = pd.DataFrame({"sent_id": [i for i, s in enumerate(sentences) if s], "tokens": [list(s) for s in sentences if s]})
        frame.attrs["glode"] = {"tokenisation": self.tokenisation}  # read by build_span_table and build_items
        spans, stats = build_span_table(frame, self.tokenizer, self.settings.max_span_len, self.settings.max_seq_len)
        if stats["truncated_sentences"]:
            log.warning("%d sentences are longer than the encoder window of %d subwords: their last words get no entity", stats["truncated_sentences"], self.settings.max_seq_len)
        items = build_items(frame, self.tokenizer, self.settings.max_seq_len, spans, classes=None, max_span_len=self.model.config.max_span_len)
        progress = not self.quiet and len(frame) > 10 * self.batch_size
        probs, _ = predict_spans(self.model, items, len(spans), self.batch_size, self.device, pad_token_id=self.tokenizer.pad_token_id, progress=progress, precision=self.precision)
        classes = list(self.model.config.classes)
        decoded = decode_entities(predictions_frame(spans, frame, probs, classes), classes)
        return [decoded.get(i, []) for i in range(len(sentences))]

    def _tokencls_entities(self, sentences: Sequence[Sequence[str]]) -> list[list[Entity]]:
        import pandas as pd
        from seqeval.metrics.sequence_labeling import get_entities

        from glode.tokencls import predict_tags

        frame = pd.DataFrame({"sent_id": range(len(sentences)), "tokens": [list(s) for s in sentences]})
        frame.attrs["glode"] = {"tokenisation": "words"}
        tags, probs = predict_tags(self.model, self.tokenizer, self.labels, self.max_seq_len, frame, self.device, self.batch_size, self.precision, with_probs=True)
        return [[(b, e, t, float(sum(p[b : e + 1]) / (e - b + 1))) for t, b, e in get_entities(row)] for row, p in zip(tags, probs)]


def check_texts(texts: Sequence[Any], where: str = "Tagger.tag") -> None:
    """A TypeError naming the first item that is not a str (its position and type), before any work."""
    import reprlib

    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{where}: texts[{position}] is {reprlib.repr(text)} ({type(text).__name__}), not a str: every text must be a string")


def text_record(text: TaggedText, entities: Sequence[Sequence[Entity]]) -> dict:
    """A text's record: its words over all sentences, and its entities with offsets into it."""
    records, first = [], 0
    for sentence, found in zip(text.sentences, entities):
        for start, end, label, prob in found:
            start_char, end_char = sentence.starts[start], sentence.ends[end]
            records.append({"start_char": start_char, "end_char": end_char, "start_token": first + start, "end_token": first + end + 1,
                            "type": label, "text": text.text[start_char:end_char], "prob": float(prob)})  # fmt: skip
        first += len(sentence.words)
    return {"text": text.text, "tokens": text.tokens, "entities": records}
