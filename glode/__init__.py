"""glode: cross-lingual NER with global-local pseudo-label denoising (GLoDe, IJCAI 2024)."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `from glode import Tagger` without importing torch for every `import glode` (the Snakefile
    # imports glode.config to plan a run)
    if name == "Tagger":
        from glode.tagger import Tagger

        return Tagger
    raise AttributeError(f"module 'glode' has no attribute {name!r}")
