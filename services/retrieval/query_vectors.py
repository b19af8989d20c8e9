"""A query's dense and BM25 vectors, the latest ones kept.

Query embedding is most of a search's cost (the dense model takes a few ms on one core;
BM25 takes tens of µs, less than a second thread hop would). Vectors depend only on the
query text and the loaded models, so the same question asked again (a regenerated
answer, several users asking the same thing) reuses them. The cache is touched only on
the event loop (`cached`, `keep`); `compute` blocks and runs in a worker thread, where
the searcher may also search with what it computed (one hop for both).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

from embedding.embedder import Embedder
from embedding.vectors import DenseVector, SparseVector

V = TypeVar("V")
Vectors = tuple[DenseVector | None, SparseVector | None]


class QueryVectors:
    def __init__(self, dense: Embedder | None, sparse: Embedder, cache_size: int) -> None:
        """`dense` embeds for the dense vector, `sparse` (any loaded embedder: BM25 does
        not depend on the dense model) for the BM25 one; no dense model, no dense vector."""
        self._embedder = dense
        self._sparse_embedder = sparse
        self._cache_size = cache_size
        self._dense: OrderedDict[str, DenseVector] = OrderedDict()
        self._sparse: OrderedDict[str, SparseVector] = OrderedDict()

    def cached(self, text: str, *, dense: bool, sparse: bool) -> Vectors:
        """The kept vectors of `text` among those asked for (event loop only)."""
        return (
            self._cached(self._dense, text) if dense else None,
            self._cached(self._sparse, text) if sparse else None,
        )

    def compute(self, text: str, *, dense: bool, sparse: bool) -> Vectors:
        """The vectors asked for, computed now (blocks: run it in a worker thread)."""
        return (
            self._embedder.embed_query(text) if dense and self._embedder is not None else None,
            self._sparse_embedder.sparse_query(text) if sparse else None,
        )

    def keep(self, text: str, made: Vectors, known: Vectors) -> Vectors:
        """Keep what `compute` made for `text`; the vectors to use (made, else known)."""
        made_dense, made_sparse = made
        dense, sparse = known
        if made_dense is not None:
            dense = self._keep(self._dense, text, made_dense)
        if made_sparse is not None:
            sparse = self._keep(self._sparse, text, made_sparse)
        return dense, sparse

    def _cached(self, cache: OrderedDict[str, V], text: str) -> V | None:
        value = cache.get(text)
        if value is not None:
            cache.move_to_end(text)
        return value

    def _keep(self, cache: OrderedDict[str, V], text: str, value: V) -> V:
        if self._cache_size > 0:
            cache[text] = value
            cache.move_to_end(text)
            while len(cache) > self._cache_size:
                cache.popitem(last=False)
        return value
