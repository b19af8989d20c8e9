"""Query vectors: computed once per text while the cache holds it, the same as uncached."""

from __future__ import annotations

from retrieval.app import Retrieval
from retrieval.query_vectors import QueryVectors, Vectors


def vectors(cache: QueryVectors, text: str, *, dense: bool, sparse: bool) -> Vectors:
    """What the searcher does: the kept vectors, the missing ones computed and kept."""
    known = cache.cached(text, dense=dense, sparse=sparse)
    need_dense = dense and known[0] is None
    need_sparse = sparse and known[1] is None
    if not (need_dense or need_sparse):
        return known
    return cache.keep(text, cache.compute(text, dense=need_dense, sparse=need_sparse), known)


def test_a_repeated_query_reuses_the_vectors_it_computed_the_first_time(
    retrieval: Retrieval,
) -> None:
    cache = QueryVectors(retrieval.embedder, retrieval.embedder, cache_size=4)

    first = vectors(cache, "where is the lighthouse", dense=True, sparse=True)
    again = cache.cached("where is the lighthouse", dense=True, sparse=True)

    assert first[0] is not None and first[1] is not None
    assert again[0] is first[0] and again[1] is first[1]
    assert first[0] == retrieval.embedder.embed_query("where is the lighthouse")
    assert first[1] == retrieval.embedder.sparse_query("where is the lighthouse")


def test_only_the_vectors_asked_for_are_computed_and_returned(retrieval: Retrieval) -> None:
    cache = QueryVectors(retrieval.embedder, retrieval.embedder, cache_size=4)

    dense_only = vectors(cache, "bread starter", dense=True, sparse=False)
    assert cache.cached("bread starter", dense=True, sparse=True) == (dense_only[0], None)
    sparse_only = vectors(cache, "bread starter", dense=False, sparse=True)

    assert dense_only[0] is not None and dense_only[1] is None
    assert sparse_only[0] is None and sparse_only[1] is not None


def test_the_least_recently_used_text_is_forgotten_beyond_the_cache_size(
    retrieval: Retrieval,
) -> None:
    cache = QueryVectors(retrieval.embedder, retrieval.embedder, cache_size=2)

    kept, _ = vectors(cache, "one", dense=True, sparse=False)
    vectors(cache, "two", dense=True, sparse=False)
    assert cache.cached("one", dense=True, sparse=False)[0] is kept  # now the newest
    vectors(cache, "three", dense=True, sparse=False)  # evicts "two"

    assert cache.cached("two", dense=True, sparse=False) == (None, None)
    assert cache.cached("three", dense=True, sparse=False)[0] is not None
    assert cache.cached("one", dense=True, sparse=False)[0] is kept
    vectors(cache, "two", dense=True, sparse=False)  # evicts "three", the least recent
    assert cache.cached("three", dense=True, sparse=False) == (None, None)


def test_a_cache_size_of_zero_keeps_nothing(retrieval: Retrieval) -> None:
    cache = QueryVectors(retrieval.embedder, retrieval.embedder, cache_size=0)

    first, _ = vectors(cache, "sourdough", dense=True, sparse=False)

    assert first is not None
    assert cache.cached("sourdough", dense=True, sparse=False) == (None, None)
