"""Offline embeddings: `python -m embedding.build` exports the model; `Embedder` runs it.

Importing this package loads nothing: fastembed is imported when an `Embedder` is built.
"""

from embedding.settings import EmbedderSettings
from embedding.vectors import DenseVector, SparseVector

__all__ = ["DenseVector", "EmbedderSettings", "SparseVector"]
