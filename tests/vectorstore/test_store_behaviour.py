"""The same behaviour from both engines: Qdrant's engine in-process, and a Qdrant server API.

qdrant-client's local mode (in memory) stands in for the server: same client, same API.
Vectors are built by hand from a tiny vocabulary so every expected ranking is exact.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import qdrant_edge as qe

from common.errors import RagwayError
from embedding.vectors import SparseVector
from vectorstore import ChunkPoint, SearchQuery, VectorStore, open_store, point_id
from vectorstore.edge import EdgeStore
from vectorstore.points import Hit
from vectorstore.server import ServerStore

VOCAB = ["apple", "banana", "cherry", "date", "elder", "fig", "grape", "kiwi", "lemon", "the"]
DIM = len(VOCAB)


def dense(text: str) -> list[float]:
    counts = Counter(text.split())
    vector = [float(counts[word]) for word in VOCAB]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def sparse(text: str) -> SparseVector:
    counts = Counter(text.split())
    indices = sorted(VOCAB.index(word) for word in counts)
    return SparseVector(indices=indices, values=[float(counts[VOCAB[i]]) for i in indices])


def chunk(file_id: str, index: int, text: str, **payload: object) -> ChunkPoint:
    return ChunkPoint(
        file_id=file_id,
        chunk_index=index,
        text=text,
        dense=dense(text),
        sparse=sparse(text),
        payload={"owner": "u1", "name": f"{file_id}.txt", **payload},
    )


def query(text: str, file_ids: list[str], mode: str = "hybrid", **kw: object) -> SearchQuery:
    return SearchQuery(
        file_ids=file_ids,
        dense=dense(text) if text else [1.0] * DIM,
        sparse=sparse(text),
        mode=mode,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


FILE_A = [chunk("a", 0, "apple banana"), chunk("a", 1, "cherry date"), chunk("a", 2, "elder fig")]
FILE_B = [chunk("b", 0, "apple grape"), chunk("b", 1, "kiwi lemon")]
MODES = ["hybrid", "dense", "sparse"]


@pytest.fixture(params=["edge", "server"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorStore]:
    engine: VectorStore
    if request.param == "edge":
        engine = EdgeStore(tmp_path / "edge", search_threads=1)  # as the retrieval service
    else:
        engine = ServerStore.local("chunks")
    await engine.ensure_collection(DIM)
    yield engine
    await engine.close()


@pytest.fixture
async def filled(store: VectorStore) -> VectorStore:
    await store.upsert([*FILE_A, *FILE_B])
    return store


@pytest.mark.parametrize("mode", MODES)
async def test_each_mode_ranks_the_matching_chunk_first(filled: VectorStore, mode: str) -> None:
    hits = await filled.search(query("cherry", ["a", "b"], mode))
    assert hits[0].id == point_id("a", 1)
    assert hits[0].text == "cherry date"
    assert hits[0].payload["owner"] == "u1" and hits[0].payload["name"] == "a.txt"


@pytest.mark.parametrize("mode", MODES)
async def test_search_never_returns_chunks_of_files_outside_the_scope(
    filled: VectorStore, mode: str
) -> None:
    hits = await filled.search(query("apple banana cherry", ["b"], mode, limit=100))
    assert hits, "file b has an apple chunk"
    assert {hit.file_id for hit in hits} == {"b"}


@pytest.mark.parametrize("mode", MODES)
async def test_an_empty_scope_finds_nothing(filled: VectorStore, mode: str) -> None:
    assert await filled.search(query("apple", [], mode)) == []


def ranked(hits: list[Hit]) -> list[tuple[float, str]]:
    """Scores and ids best first, tied hits in id order (engines order ties arbitrarily)."""
    return sorted((-round(hit.score, 5), hit.id) for hit in hits)


async def test_search_many_answers_each_query_as_search_would(filled: VectorStore) -> None:
    queries = [
        query("cherry", ["a", "b"]),
        query("apple", ["b"], "dense", limit=1),
        query("apple", [], "hybrid"),  # an empty scope
        query("kiwi lemon", ["a", "b"], "sparse"),
        query("the", ["a", "b"], "sparse"),  # no term in any chunk: nothing to match
        query("elder", ["a"], "hybrid", fusion="dbsf"),
    ]
    one_by_one = [await filled.search(q) for q in queries]
    assert [ranked(hits) for hits in await filled.search_many(queries)] == [
        ranked(hits) for hits in one_by_one
    ]
    assert one_by_one[0][0].id == point_id("a", 1) and one_by_one[2] == []
    assert [h.file_id for h in one_by_one[1]] == ["b"]


async def test_a_worker_thread_search_answers_as_search_many_does(filled: VectorStore) -> None:
    search_now = filled.thread_search()
    if isinstance(filled, ServerStore):
        assert search_now is None  # an asynchronous client: searches stay on the loop
        return
    assert search_now is not None
    queries = [query("cherry", ["a", "b"]), query("apple", []), query("kiwi", ["b"], "sparse")]
    expected = await filled.search_many(queries)

    # several threads at once, beside writes on the store's own thread: one call at a time
    upserting = filled.upsert([chunk("c", i, "fig grape") for i in range(50)])
    found, _ = await asyncio.gather(
        asyncio.gather(*(asyncio.to_thread(search_now, queries) for _ in range(8))), upserting
    )

    # the same hits and the same best one: the writes change BM25's collection statistics,
    # so scores (and the order of tied hits) may move with when each search ran
    def seen(hits: list[Hit]) -> tuple[str | None, set[str]]:
        return (hits[0].id if hits else None), {hit.id for hit in hits}

    wanted = [seen(hits) for hits in expected]
    assert all([seen(hits) for hits in result] == wanted for result in found)
    with pytest.raises(RagwayError):
        search_now([query("apple", ["a"], limit=0)])


async def test_search_many_of_one_query_or_none(filled: VectorStore) -> None:
    assert await filled.search_many([]) == []
    [hits] = await filled.search_many([query("grape", ["a", "b"])])
    assert hits[0].id == point_id("b", 0)


async def test_search_many_refuses_all_when_one_query_is_invalid(filled: VectorStore) -> None:
    invalid = SearchQuery(file_ids=["a"], dense=None, sparse=sparse("apple"), mode="dense")
    with pytest.raises(RagwayError) as refused:
        await filled.search_many([query("apple", ["a"]), invalid])
    assert refused.value.code == "invalid"


async def test_the_limit_caps_the_number_of_hits(filled: VectorStore) -> None:
    hits = await filled.search(query("apple banana cherry date", ["a", "b"], "dense", limit=2))
    assert len(hits) == 2


async def test_bm25_weighs_a_rare_term_above_a_common_one(store: VectorStore) -> None:
    common = [chunk("c", i, f"the {word}") for i, word in enumerate(["date", "elder", "fig"])]
    await store.upsert([*common, chunk("c", 3, "the kiwi"), chunk("c", 4, "the lemon")])
    # "the" is in every chunk, "kiwi" in one: with IDF the kiwi chunk must win clearly.
    hits = await store.search(query("the kiwi", ["c"], "sparse", limit=5))
    assert hits[0].id == point_id("c", 3)
    assert hits[0].score > 2 * hits[1].score


async def test_upserting_the_same_chunks_again_overwrites_instead_of_duplicating(
    filled: VectorStore,
) -> None:
    await filled.upsert([chunk("a", 1, "grape grape", version=2)])
    await filled.upsert(FILE_B)
    assert await filled.count("a") == 3
    assert await filled.count() == 5
    chunks = await filled.get_file_chunks("a")
    assert chunks[1].text == "grape grape" and chunks[1].payload["version"] == 2


async def test_delete_file_removes_that_files_chunks_and_no_others(filled: VectorStore) -> None:
    await filled.delete_file("a")
    assert await filled.count("a") == 0
    assert await filled.count("b") == 2
    assert await filled.search(query("cherry", ["a"], "dense")) == []
    assert len(await filled.search(query("apple", ["b"], "dense"))) == 2


async def test_full_file_chunks_come_back_in_chunk_order_across_pages(store: VectorStore) -> None:
    words = VOCAB[:9]
    points = [chunk("long", i, f"{words[i % 9]} {words[(i * 7) % 9]}") for i in range(300)]
    random.Random(7).shuffle(points)
    await store.upsert(points)
    await store.upsert(FILE_B)
    chunks = await store.get_file_chunks("long")
    assert [c.chunk_index for c in chunks] == list(range(300))
    assert {c.file_id for c in chunks} == {"long"}
    assert await store.get_file_chunks("missing") == []


async def test_a_score_threshold_drops_weak_dense_matches(filled: VectorStore) -> None:
    everything = await filled.search(query("apple banana", ["a", "b"], "dense", limit=10))
    assert len(everything) == 5
    strong = await filled.search(
        query("apple banana", ["a", "b"], "dense", limit=10, score_threshold=0.4)
    )
    # cos(apple banana, apple banana) = 1, cos(., apple grape) = 0.5, others 0.
    assert [hit.id for hit in strong] == [point_id("a", 0), point_id("b", 0)]
    assert all(hit.score >= 0.4 for hit in strong)


async def test_hybrid_search_of_only_unknown_words_falls_back_to_dense(
    filled: VectorStore,
) -> None:
    search = SearchQuery(
        file_ids=["a"], dense=dense("elder"), sparse=SparseVector(indices=[], values=[])
    )
    hits = await filled.search(search)
    assert hits[0].id == point_id("a", 2)
    assert await filled.search(msgspec.structs.replace(search, mode="sparse")) == []


async def test_a_mode_without_its_vector_is_invalid(filled: VectorStore) -> None:
    with pytest.raises(RagwayError) as caught:
        await filled.search(SearchQuery(file_ids=["a"], dense=dense("apple"), mode="hybrid"))
    assert caught.value.code == "invalid"


async def test_reopening_with_another_dimension_is_a_conflict(filled: VectorStore) -> None:
    with pytest.raises(RagwayError) as caught:
        await filled.ensure_collection(DIM + 1)
    assert caught.value.code == "conflict"
    await filled.ensure_collection(DIM)  # the right dimension is fine, again and again


async def test_the_edge_stores_search_pool_can_be_resized_at_a_reopen(tmp_path: Path) -> None:
    first = EdgeStore(tmp_path / "shard")  # the engine's default pool
    await first.ensure_collection(DIM)
    await first.upsert([*FILE_A, *FILE_B])
    await first.close()

    for threads in (1, 3, 0):  # 0: as stored
        store = EdgeStore(tmp_path / "shard", search_threads=threads)
        await store.ensure_collection(DIM)
        try:
            assert await store.count() == 5
            hits = await store.search(query("cherry", ["a", "b"], "hybrid"))
            assert hits[0].id == point_id("a", 1)
        finally:
            await store.close()
        stored = json.loads((tmp_path / "shard" / "edge_config.json").read_text())
        assert stored.get("max_search_threads") == (threads or 3)


async def test_the_edge_store_keeps_its_points_across_a_reopen(tmp_path: Path) -> None:
    first = EdgeStore(tmp_path / "shard")
    await first.ensure_collection(DIM)
    await first.upsert([*FILE_A, *FILE_B])
    await first.delete_file("b")
    await first.close()

    second = EdgeStore(tmp_path / "shard")
    await second.ensure_collection(DIM)
    try:
        assert await second.count() == 3
        hits = await second.search(query("cherry", ["a", "b"], "hybrid"))
        assert hits[0].id == point_id("a", 1)
    finally:
        await second.close()


async def test_the_server_store_works_on_a_directory_too(tmp_path: Path) -> None:
    store = ServerStore.local("chunks", path=str(tmp_path / "local"))
    await store.ensure_collection(DIM)
    await store.upsert(FILE_A)
    await store.close()
    reopened = ServerStore.local("chunks", path=str(tmp_path / "local"))
    try:
        await reopened.ensure_collection(DIM)
        assert await reopened.count("a") == 3
    finally:
        await reopened.close()


async def test_open_store_without_a_url_keeps_the_collection_in_its_own_directory(
    tmp_path: Path,
) -> None:
    async with open_store(dim=DIM, edge_path=tmp_path, collection="kb") as store:
        assert isinstance(store, EdgeStore)
        await store.upsert(FILE_B)
    async with open_store(dim=DIM, edge_path=tmp_path, collection="kb") as store:
        assert await store.count() == 2
    assert (tmp_path / "kb" / "edge_config.json").is_file()


async def test_a_files_points_come_back_with_the_vectors_they_were_written_with(
    filled: VectorStore,
) -> None:
    points = await filled.get_file_points("a")
    assert [p.chunk_index for p in points] == [0, 1, 2]
    for stored, written in zip(points, FILE_A, strict=True):
        assert stored.text == written.text and stored.payload == written.payload
        assert stored.dense == pytest.approx(written.dense, abs=1e-6)
        assert stored.sparse.indices == written.sparse.indices
        assert stored.sparse.values == pytest.approx(written.sparse.values)
    assert await filled.get_file_points("missing") == []


async def test_copying_a_file_stores_its_vectors_under_the_new_file_only(
    filled: VectorStore,
) -> None:
    copied = await filled.copy_file("a", "a2", {"owner": "u2", "name": "copy.txt"})

    assert copied == 3
    assert await filled.count("a2") == 3 and await filled.count("a") == 3
    hits = await filled.search(query("cherry", ["a2"], "dense", limit=1))
    original = await filled.search(query("cherry", ["a"], "dense", limit=1))
    assert hits[0].id == point_id("a2", 1) != original[0].id
    assert hits[0].score == pytest.approx(original[0].score, abs=1e-5)
    assert hits[0].payload["owner"] == "u2" and hits[0].payload["name"] == "copy.txt"
    assert original[0].payload["owner"] == "u1"
    sparse_hits = await filled.search(query("cherry", ["a2"], "sparse", limit=1))
    assert sparse_hits[0].id == point_id("a2", 1)
    assert await filled.copy_file("missing", "m2", {}) == 0
    assert await filled.count("m2") == 0


# Dense (no IDF) prefers the chunk full of "the"; BM25 (IDF) prefers the one with the rare "kiwi".
DISAGREEING = [
    chunk("w", i, text)
    for i, text in enumerate(
        ["the the the the date", "the elder", "the fig", "the grape", "the lemon", "kiwi apple"]
    )
]
DISAGREEING_QUERY = "the kiwi"


@pytest.mark.parametrize(
    ("dense_weight", "sparse_weight", "first"),
    # (equal weights are not asserted: the two winners then tie on fused rank)
    [(1.0, 0.0, 0), (0.0, 1.0, 5)],
)
async def test_a_zero_weight_leaves_that_side_out_of_hybrid_search(
    store: VectorStore, dense_weight: float, sparse_weight: float, first: int
) -> None:
    await store.upsert(DISAGREEING)
    assert (await store.search(query(DISAGREEING_QUERY, ["w"], "dense")))[0].chunk_index == 0
    assert (await store.search(query(DISAGREEING_QUERY, ["w"], "sparse")))[0].chunk_index == 5

    hits = await store.search(
        query(
            DISAGREEING_QUERY,
            ["w"],
            "hybrid",
            dense_weight=dense_weight,
            sparse_weight=sparse_weight,
        )
    )

    assert hits[0].chunk_index == first
    assert {hit.file_id for hit in hits} == {"w"}


async def test_dbsf_fusion_ranks_the_matching_chunk_first_within_the_scope(
    filled: VectorStore,
) -> None:
    hits = await filled.search(query("cherry", ["a"], "hybrid", fusion="dbsf"))
    assert hits[0].id == point_id("a", 1)
    assert {hit.file_id for hit in hits} == {"a"}


async def test_negative_or_all_zero_weights_are_refused(filled: VectorStore) -> None:
    for weights in ({"dense_weight": -1.0}, {"dense_weight": 0.0, "sparse_weight": 0.0}):
        with pytest.raises(RagwayError) as refused:
            await filled.search(query("apple", ["a"], "hybrid", **weights))
        assert refused.value.code == "invalid"


async def test_keyword_only_chunks_are_found_by_bm25_and_skipped_by_dense_search(
    store: VectorStore,
) -> None:
    keyword_only = [msgspec.structs.replace(c, dense=[]) for c in FILE_A]
    await store.upsert([*keyword_only, *FILE_B])
    assert await store.count("a") == 3
    sparse_hits = await store.search(query("cherry", ["a", "b"], "sparse"))
    assert sparse_hits[0].id == point_id("a", 1)
    dense_hits = await store.search(query("cherry", ["a", "b"], "dense"))
    assert {hit.file_id for hit in dense_hits} == {"b"}
    # fused: the BM25 match ranks with the best dense candidate (RRF ties rank 1 with rank 1)
    hybrid = {hit.id: hit.score for hit in await store.search(query("cherry", ["a", "b"]))}
    assert hybrid[point_id("a", 1)] == max(hybrid.values())
    stored = await store.get_file_points("a")
    assert [p.dense for p in stored] == [[], [], []]


async def test_writing_a_keyword_only_chunk_again_with_its_dense_vector_completes_it(
    store: VectorStore,
) -> None:
    await store.upsert([msgspec.structs.replace(c, dense=[]) for c in FILE_A])
    await store.upsert(FILE_A[1:2])  # the dense vector arrives for one chunk
    assert await store.count("a") == 3
    dense_hits = await store.search(query("cherry", ["a"], "dense"))
    assert [hit.id for hit in dense_hits] == [point_id("a", 1)]
    stored = {p.chunk_index: p for p in await store.get_file_points("a")}
    assert stored[1].dense == pytest.approx(FILE_A[1].dense)
    assert stored[0].dense == [] and stored[0].sparse.indices == FILE_A[0].sparse.indices


@pytest.mark.parametrize("mode", MODES)
async def test_a_collection_scope_finds_the_chunks_of_its_files_only(
    filled: VectorStore, mode: str
) -> None:
    await filled.set_collections(["a"], ["k1"])
    await filled.set_collections(["b"], ["k1", "k2"])
    both = await filled.search(query("apple", [], mode, collection="k1", limit=10))
    assert {hit.file_id for hit in both} == {"a", "b"}
    only_b = await filled.search(query("apple", [], mode, collection="k2", limit=10))
    assert {hit.file_id for hit in only_b} == {"b"}
    assert await filled.search(query("apple", [], mode, collection="k3")) == []


async def test_a_collection_scope_leaves_its_excluded_files_out(filled: VectorStore) -> None:
    await filled.set_collections(["a", "b"], ["k1"])
    hits = await filled.search(
        query("apple", [], "hybrid", collection="k1", exclude_file_ids=["a"], limit=10)
    )
    assert {hit.file_id for hit in hits} == {"b"}


async def test_setting_a_files_collections_replaces_them(filled: VectorStore) -> None:
    await filled.set_collections(["a"], ["k1", "k2"])
    assert await filled.count_lacking(["a"], ["k1", "k2"]) == 0
    await filled.set_collections(["a"], ["k2"])
    assert await filled.search(query("apple", [], "dense", collection="k1")) == []
    assert await filled.count_lacking(["a"], ["k1"]) == len(FILE_A)
    assert await filled.count_lacking(["a", "b"], ["k2"]) == len(FILE_B)  # b has none


async def test_an_edge_store_made_before_collections_gets_their_index_at_reopen(
    tmp_path: Path,
) -> None:
    store = EdgeStore(tmp_path / "old", search_threads=1)
    await store.ensure_collection(DIM)
    store.shard.update(qe.UpdateOperation.delete_field_index("collections"))
    assert "collections" not in store.shard.info().payload_schema
    await store.close()
    reopened = EdgeStore(tmp_path / "old", search_threads=1)
    await reopened.ensure_collection(DIM)
    try:
        assert "collections" in reopened.shard.info().payload_schema
    finally:
        await reopened.close()


async def test_file_counts_name_every_file_with_its_number_of_chunks(store: VectorStore) -> None:
    assert await store.file_counts() == {}
    points = [chunk(f"f{i % 3}", i, VOCAB[i % len(VOCAB)]) for i in range(30)]
    await store.upsert([*points, *FILE_B])
    await store.delete_file("f2")
    assert await store.file_counts() == {"f0": 10, "f1": 10, "b": len(FILE_B)}


async def test_a_dropped_edge_collection_is_gone_and_can_be_made_anew(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "old", search_threads=1)
    await store.ensure_collection(DIM)
    await store.upsert(FILE_A)
    await store.drop()
    assert not (tmp_path / "old").exists()
    again = EdgeStore(tmp_path / "old", search_threads=1)
    await again.ensure_collection(DIM + 1)  # another model's dimension: no conflict
    assert await again.count() == 0
    await again.close()
