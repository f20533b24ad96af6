"""The spaCy pipeline component `glode_ner`: a glode model in the spaCy pipelines NER users run.

    import spacy
    nlp = spacy.blank("fr")
    nlp.add_pipe("glode_ner", config={"model": "path/to/model"})
    doc = nlp("Le fleuve Loire traverse Orléans, Tours et Nantes.")
    doc.ents                                  # on spaCy's own tokens
    [(s.text, s.label_, s._.glode_prob) for s in doc.spans["glode"]]

The factory is registered through the `spacy_factories` entry point (pyproject.toml), so no
import is needed. The component tags each doc's text with `glode.Tagger` (the model's own
splitter and decoding) and aligns the entities to the doc's tokens by character offsets: an
entity whose edges fall inside a spaCy token grows to whole tokens (`alignment_mode="expand"`),
and where two grown entities would overlap the more probable one is kept. `doc.ents` gets them
(replacing earlier entities); `doc.spans[spans_key]` gets them too, each with its probability as
`span._.glode_prob`.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from spacy.language import Language
from spacy.tokens import Doc, Span

PROB_ATTR = "glode_prob"
if not Span.has_extension(PROB_ATTR):
    Span.set_extension(PROB_ATTR, default=None)


class GlodeNER:
    """Sets `doc.ents` and `doc.spans[spans_key]` from a glode model's entities."""

    def __init__(self, name: str, model: str, device: str, batch_size: int, precision: str, spans_key: str):
        from glode.tagger import Tagger

        self.name, self.spans_key, self.batch_size = name, spans_key, batch_size
        self.tagger = Tagger.load(model, device=device, precision=precision, batch_size=batch_size, quiet=True)

    def __call__(self, doc: Doc) -> Doc:
        if not isinstance(doc, Doc):
            raise TypeError(f"{self.name}: expected a spaCy Doc, got {type(doc).__name__}")
        return next(iter(self.pipe([doc])))

    def pipe(self, docs: Iterable[Doc], batch_size: int = 128) -> Iterator[Doc]:
        """The docs tagged in batches; an item that is not a Doc is a TypeError naming its
        position, raised before its batch is tagged."""
        batch: list[Doc] = []
        for position, doc in enumerate(docs):
            if not isinstance(doc, Doc):
                raise TypeError(f"{self.name}.pipe: docs[{position}] is {type(doc).__name__}, not a spaCy Doc")
            batch.append(doc)
            if len(batch) >= batch_size:
                yield from self._tag(batch)
                batch = []
        yield from self._tag(batch)

    def _tag(self, docs: list[Doc]) -> Iterator[Doc]:
        if not docs:
            return
        for doc, record in zip(docs, self.tagger.tag([doc.text for doc in docs])):
            spans = aligned_spans(doc, record["entities"])
            doc.ents = spans
            doc.spans[self.spans_key] = spans
            yield doc


def aligned_spans(doc: Doc, entities: list[dict]) -> list[Span]:
    """The entities as spans of the doc's tokens, most probable first where grown ones overlap."""
    taken: set[int] = set()
    spans = []
    for entity in sorted(entities, key=lambda e: -e["prob"]):
        span = doc.char_span(entity["start_char"], entity["end_char"], label=entity["type"], alignment_mode="expand")
        if span is None or taken & set(range(span.start, span.end)):
            continue
        span._.set(PROB_ATTR, entity["prob"])
        taken.update(range(span.start, span.end))
        spans.append(span)
    return sorted(spans, key=lambda s: s.start)


@Language.factory(
    "glode_ner",
    default_config={"model": None, "device": "cpu", "batch_size": 32, "precision": "auto", "spans_key": "glode"},
    assigns=["doc.ents", "doc.spans"],
)
def make_glode_ner(nlp: Language, name: str, model: str, device: str, batch_size: int, precision: str, spans_key: str) -> GlodeNER:
    if not model:
        raise ValueError('glode_ner needs the model directory: nlp.add_pipe("glode_ner", config={"model": DIR})')
    return GlodeNER(name, model, device, batch_size, precision, spans_key)
