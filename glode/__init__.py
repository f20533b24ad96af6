"""glode: cross-lingual NER with global-local pseudo-label denoising (GLoDe, IJCAI 2024)."""

__version__ = "0.1.0"
