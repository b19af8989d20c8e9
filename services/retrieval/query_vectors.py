"""A query's dense and BM25 vectors: both in one thread hop, the latest ones kept.

Query embedding is most of a search's cost (the dense model takes a few ms on one core;
BM25 takes tens of µs, less than a second thread hop would). Vectors depend only on the
query text and the loaded models, so the same question asked again (a regenerated
answer, several users asking the same thing) reuses them. The cache is touched only on
the event loop; the embedder runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import TypeVar

from embedding.embedder import Embedder
from embedding.vectors import DenseVector, SparseVector

V = TypeVar("V")


class QueryVectors:
    def __init__(self, embedder: Embedder, cache_size: int) -> None:
        self._embedder = embedder
        self._cache_size = cache_size
        self._dense: OrderedDict[str, DenseVector] = OrderedDict()
        self._sparse: OrderedDict[str, SparseVector] = OrderedDict()

    async def vectors(
        self, text: str, *, dense: bool, sparse: bool
    ) -> tuple[DenseVector | None, SparseVector | None]:
        """The vectors asked for (None for the others), computed at most once per text."""
        dense_vector = self._cached(self._dense, text) if dense else None
        sparse_vector = self._cached(self._sparse, text) if sparse else None
        need_dense = dense and dense_vector is None
        need_sparse = sparse and sparse_vector is None
        if need_dense or need_sparse:
            made_dense, made_sparse = await asyncio.to_thread(
                self._embed, text, need_dense, need_sparse
            )
            if made_dense is not None:
                dense_vector = self._keep(self._dense, text, made_dense)
            if made_sparse is not None:
                sparse_vector = self._keep(self._sparse, text, made_sparse)
        return dense_vector, sparse_vector

    def _embed(
        self, text: str, dense: bool, sparse: bool
    ) -> tuple[DenseVector | None, SparseVector | None]:
        return (
            self._embedder.embed_query(text) if dense else None,
            self._embedder.sparse_query(text) if sparse else None,
        )

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
