"""Vectors as the embedder produces them and the vector store consumes them."""

from __future__ import annotations

import msgspec

DenseVector = list[float]


class SparseVector(msgspec.Struct, frozen=True, kw_only=True):
    """A BM25 term-frequency vector: parallel lists of term ids and weights."""

    indices: list[int]
    values: list[float]
