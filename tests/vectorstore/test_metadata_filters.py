"""Metadata filters inside the search, the same on both engines and on file records.

Every filter is checked three ways: the chunks each engine finds (in every mode), the
chunks `catalog.metadata_match` passes, and the set written out by hand here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from catalog.metadata_match import matches
from contracts.filters import MetadataFilter
from embedding.vectors import SparseVector
from vectorstore import ChunkPoint, SearchQuery, VectorStore
from vectorstore.edge import EdgeStore
from vectorstore.points import FILE_METADATA
from vectorstore.server import ServerStore

DIM = 4

METADATA: dict[str, dict[str, Any]] = {
    "f2019": {"year": 2019, "lang": "en", "published": "2019-06-01", "tags": ["old"]},
    "f2020": {"year": 2020, "lang": "de", "published": "2020-01-15T08:00:00Z", "draft": "yes"},
    "f2021": {"year": 2021.5, "lang": "fr", "published": "2021-03-01T12:00:00+02:00"},
    "f2022": {"year": 2022, "lang": "en", "tags": ["new", "hot"], "meta": {"team": "b"}},
    "fnone": {},
}

CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"must": [{"key": "lang", "eq": "en"}]}, {"f2019", "f2022"}),
    ({"must": [{"key": "year", "eq": 2020}]}, {"f2020"}),
    ({"must": [{"key": "lang", "in": ["de", "fr"]}]}, {"f2020", "f2021"}),
    ({"must": [{"key": "year", "in": [2019, 2022]}]}, {"f2019", "f2022"}),
    ({"must": [{"key": "year", "range": {"gte": 2020, "lt": 2022}}]}, {"f2020", "f2021"}),
    ({"must": [{"key": "year", "range": {"gt": 2021}}]}, {"f2021", "f2022"}),
    ({"must": [{"key": "published", "range": {"gte": "2020-01-01"}}]}, {"f2020", "f2021"}),
    # 2021-03-01T12:00+02:00 is 10:00 UTC: before 11:00 UTC, after 09:00 UTC
    (
        {"must": [{"key": "published", "range": {"lt": "2021-03-01T11:00:00"}}]},
        {"f2019", "f2020", "f2021"},
    ),
    ({"must": [{"key": "published", "range": {"gt": "2021-03-01T10:30:00Z"}}]}, set()),
    ({"must": [{"key": "tags", "eq": "hot"}]}, {"f2022"}),
    ({"must": [{"key": "meta.team", "eq": "b"}]}, {"f2022"}),
    ({"must_not": [{"key": "lang", "eq": "en"}]}, {"f2020", "f2021", "fnone"}),
    (
        {"should": [{"key": "lang", "eq": "fr"}, {"key": "year", "range": {"lte": 2019}}]},
        {"f2019", "f2021"},
    ),
    (
        {
            "must": [{"key": "year", "range": {"gte": 2019}}],
            "must_not": [{"key": "draft", "eq": "yes"}],
        },
        {"f2019", "f2021", "f2022"},
    ),
]


def point(file_id: str, index: int, vector: list[float]) -> ChunkPoint:
    return ChunkPoint(
        file_id=file_id,
        chunk_index=index,
        text=f"word{index}",
        dense=vector,
        sparse=SparseVector(indices=[0], values=[1.0 + index]),
        payload={"owner": "u1", FILE_METADATA: METADATA[file_id], "collections": ["kb"]},
    )


@pytest.fixture(params=["edge", "server"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorStore]:
    engine: VectorStore
    if request.param == "edge":
        engine = EdgeStore(tmp_path / "edge", search_threads=1)
    else:
        engine = ServerStore.local("chunks")
    await engine.ensure_collection(DIM)
    await engine.upsert(
        [point(fid, i, [1.0, 0.1 * i, 0.0, 0.0]) for fid in METADATA for i in range(2)]
    )
    yield engine
    await engine.close()


def decoded(raw: dict[str, Any]) -> MetadataFilter:
    return msgspec.convert(raw, MetadataFilter)


@pytest.mark.parametrize("raw,expected", CASES)
def test_records_pass_a_filter_as_written_out(raw: dict[str, Any], expected: set[str]) -> None:
    passed = {fid for fid, meta in METADATA.items() if matches(decoded(raw), meta)}
    assert passed == expected


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
@pytest.mark.parametrize("raw,expected", CASES)
async def test_the_engines_search_only_chunks_that_pass_the_filter(
    store: VectorStore, raw: dict[str, Any], expected: set[str], mode: str
) -> None:
    found = await store.search(
        SearchQuery(
            collection="kb",
            dense=[1.0, 0.0, 0.0, 0.0],
            sparse=SparseVector(indices=[0], values=[1.0]),
            mode=mode,  # type: ignore[arg-type]
            limit=20,
            filter=decoded(raw),
        )
    )
    assert {hit.file_id for hit in found} == expected
    assert len(found) == 2 * len(expected)  # both chunks of every file that passes


async def test_k_results_come_back_when_only_the_worst_ranked_chunks_match(
    tmp_path: Path,
) -> None:
    engine = EdgeStore(tmp_path / "edge", search_threads=1)
    await engine.ensure_collection(DIM)
    # 400 chunks close to the query, then 5 far from it: the only ones tagged "rare"
    near = [
        ChunkPoint(
            file_id=f"n{i}",
            chunk_index=0,
            text="near",
            dense=[1.0, 0.001 * i, 0.0, 0.0],
            sparse=SparseVector(indices=[0], values=[1.0]),
            payload={FILE_METADATA: {"kind": "common"}, "collections": ["kb"]},
        )
        for i in range(400)
    ]
    far = [
        ChunkPoint(
            file_id=f"r{i}",
            chunk_index=0,
            text="far",
            dense=[0.0, 0.0, 1.0, 0.01 * i],
            sparse=SparseVector(indices=[1], values=[1.0]),
            payload={FILE_METADATA: {"kind": "rare"}, "collections": ["kb"]},
        )
        for i in range(5)
    ]
    await engine.upsert([*near, *far])
    await engine.optimize()
    rare = decoded({"must": [{"key": "kind", "eq": "rare"}]})
    found = await engine.search(
        SearchQuery(collection="kb", dense=[1.0, 0.0, 0.0, 0.0], mode="dense", limit=3, filter=rare)
    )
    assert len(found) == 3
    assert all(hit.file_id.startswith("r") for hit in found)
    # the key filtered on now has a payload index of the kind its test asked for
    schema = engine.shard.info().payload_schema
    assert f"{FILE_METADATA}.kind" in schema
    await engine.close()


async def test_a_file_scope_and_a_filter_combine(store: VectorStore) -> None:
    found = await store.search(
        SearchQuery(
            file_ids=["f2019", "f2020"],
            dense=[1.0, 0.0, 0.0, 0.0],
            mode="dense",
            limit=10,
            filter=decoded(
                {"must": [{"key": "lang", "in": ["de", "en"]}, {"key": "year", "eq": 2020}]}
            ),
        )
    )
    assert {hit.file_id for hit in found} == {"f2020"}


@pytest.mark.parametrize(
    "raw,reason",
    [
        ({"must": [{"key": "year"}]}, "exactly one of eq, in, range"),
        ({"must": [{"key": "year", "eq": 1, "in": [1]}]}, "exactly one of eq, in, range"),
        ({"must": [{"key": "year", "range": {}}]}, "at least one of"),
        ({"must": [{"key": "d", "range": {"gte": 1, "lt": "2020-01-01"}}]}, "all numbers or all"),
        ({"must": [{"key": "d", "range": {"gte": "last tuesday"}}]}, "not an ISO 8601"),
        ({"must": [{"key": "tag", "in": ["a", 1]}]}, "not both"),
        ({"must": [{"key": "x", "eq": 1.5}]}, "Expected"),
        ({"must": [{"key": "x", "eq": True}]}, "Expected"),
        ({"must": [{"key": "x", "in": [2**63]}]}, "Expected"),
        ({"must": [{"key": "bad key!", "eq": 1}]}, "matching regex"),
        ({"must": [{"key": "x", "equals": 1}]}, "unknown field"),
        ({"mustnt": []}, "unknown field"),
    ],
)
def test_a_malformed_filter_is_refused_with_its_reason(raw: dict[str, Any], reason: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=reason):
        decoded(raw)
