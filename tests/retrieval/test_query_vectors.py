"""Query vectors: computed once per text while the cache holds it, the same as uncached."""

from __future__ import annotations

from retrieval.app import Retrieval
from retrieval.query_vectors import QueryVectors


async def test_a_repeated_query_reuses_the_vectors_it_computed_the_first_time(
    retrieval: Retrieval,
) -> None:
    vectors = QueryVectors(retrieval.embedder, cache_size=4)

    first = await vectors.vectors("where is the lighthouse", dense=True, sparse=True)
    again = await vectors.vectors("where is the lighthouse", dense=True, sparse=True)

    assert first[0] is not None and first[1] is not None
    assert again[0] is first[0] and again[1] is first[1]
    assert first[0] == retrieval.embedder.embed_query("where is the lighthouse")
    assert first[1] == retrieval.embedder.sparse_query("where is the lighthouse")


async def test_only_the_vectors_asked_for_are_returned(retrieval: Retrieval) -> None:
    vectors = QueryVectors(retrieval.embedder, cache_size=4)

    dense_only = await vectors.vectors("bread starter", dense=True, sparse=False)
    sparse_only = await vectors.vectors("bread starter", dense=False, sparse=True)

    assert dense_only[0] is not None and dense_only[1] is None
    assert sparse_only[0] is None and sparse_only[1] is not None


async def test_the_least_recently_used_text_is_forgotten_beyond_the_cache_size(
    retrieval: Retrieval,
) -> None:
    vectors = QueryVectors(retrieval.embedder, cache_size=2)

    kept, _ = await vectors.vectors("one", dense=True, sparse=False)
    await vectors.vectors("two", dense=True, sparse=False)
    assert (await vectors.vectors("one", dense=True, sparse=False))[0] is kept  # now newest
    await vectors.vectors("three", dense=True, sparse=False)  # evicts "two"
    dropped, _ = await vectors.vectors("two", dense=True, sparse=False)
    again, _ = await vectors.vectors("two", dense=True, sparse=False)

    assert (await vectors.vectors("three", dense=True, sparse=False))[0] is not None
    assert again is dropped  # cached once more after being recomputed
    assert (await vectors.vectors("one", dense=True, sparse=False))[0] is not kept  # evicted


async def test_a_cache_size_of_zero_keeps_nothing(retrieval: Retrieval) -> None:
    vectors = QueryVectors(retrieval.embedder, cache_size=0)

    first, _ = await vectors.vectors("sourdough", dense=True, sparse=False)
    second, _ = await vectors.vectors("sourdough", dense=True, sparse=False)

    assert first == second and first is not second
