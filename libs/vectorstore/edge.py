"""The embedded engine: Qdrant's own engine in-process (`qdrant-edge-py` EdgeShard).

The shard's API is synchronous, so every call runs on one worker thread owned by the
store, under one lock that serialises access (which the shard expects). Searches may also
run on a caller's thread under the same lock (`thread_search`): a query embedded in a
worker thread is searched there too, one thread hop instead of two. One process owns a
storage directory (a second one fails on the WAL lock).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import qdrant_edge as qe
import structlog

from common.errors import RagwayError
from embedding.vectors import SparseVector
from vectorstore.edge_filters import EDGE_SCHEMA, edge_filter
from vectorstore.filters import wanted_indexes
from vectorstore.points import COLLECTIONS, DENSE, SPARSE, ChunkPoint, Hit, SearchQuery
from vectorstore.store import (
    COUNT_PAGE,
    RRF_K,
    SCROLL_PAGE,
    any_to_search,
    copy_points,
    dimension_conflict,
    in_chunk_order,
    point_hit,
    prefetch_limit,
    rrf_weights,
    stored_point,
    whole_file,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")
CONFIG_FILE = "edge_config.json"


def _files(file_ids: Sequence[str]) -> qe.FieldCondition:
    return qe.FieldCondition(key="file_id", match=qe.MatchAny(any=list(file_ids)))


def _file_filter(file_ids: Sequence[str]) -> qe.Filter:
    return qe.Filter(must=[_files(file_ids)])


def _in_collection(collection: str) -> qe.FieldCondition:
    return qe.FieldCondition(key=COLLECTIONS, match=qe.MatchValue(collection))


def _scope(query: SearchQuery) -> qe.Filter:
    """A collection (one indexed condition, minus its excluded files), or a list of files;
    and the query's metadata filter, when it has one."""
    on_metadata: list[qe.ConditionType] = (
        [edge_filter(query.filter)] if query.filter is not None else []
    )
    if query.collection:
        excluded: list[qe.ConditionType] = (
            [_files(query.exclude_file_ids)] if query.exclude_file_ids else []
        )
        return qe.Filter(
            must=[_in_collection(query.collection), *on_metadata], must_not=excluded or None
        )
    return qe.Filter(must=[_files(query.file_ids), *on_metadata])


def _point(record: Any) -> ChunkPoint:
    vectors = record.vector or {}
    sparse = vectors.get(SPARSE)
    return stored_point(
        dict(record.payload or {}),
        [float(v) for v in vectors.get(DENSE, [])],
        SparseVector(
            indices=[int(i) for i in sparse.indices] if sparse is not None else [],
            values=[float(v) for v in sparse.values] if sparse is not None else [],
        ),
    )


def _vectors(point: ChunkPoint) -> dict[str, Any]:
    """The point's named vectors; a keyword-only point (no dense yet) has BM25 alone."""
    vectors: dict[str, Any] = {SPARSE: qe.SparseVector(point.sparse.indices, point.sparse.values)}
    if point.dense:
        vectors[DENSE] = point.dense
    return vectors


def _fusion(query: SearchQuery) -> Any:
    # The stub types `query` as Fusion, not its Rrf/Dbsf members: hence Any.
    if query.fusion == "dbsf":
        return qe.Fusion.Dbsf()
    return qe.Fusion.Rrf(k=RRF_K, weights=rrf_weights(query))


def _request(query: SearchQuery) -> qe.QueryRequest | None:
    """The engine's request for a checked query with files (None: nothing can match)."""
    scope = _scope(query)
    sparse = query.sparse if query.sparse is not None and query.sparse.indices else None
    dense_query = qe.Query.Nearest(query.dense, using=DENSE) if query.dense is not None else None
    sparse_query = (
        qe.Query.Nearest(qe.SparseVector(sparse.indices, sparse.values), using=SPARSE)
        if sparse is not None
        else None
    )
    mode = query.effective_mode()
    if mode == "sparse" and sparse_query is None:
        return None  # nothing to match: the query was only stopwords
    if mode == "hybrid" and sparse_query is not None:
        candidates = prefetch_limit(query.limit)
        return qe.QueryRequest(
            limit=query.limit,
            prefetches=[
                qe.Prefetch(
                    limit=candidates,
                    query=dense_query,
                    filter=scope,
                    score_threshold=query.score_threshold,
                ),
                qe.Prefetch(limit=candidates, query=sparse_query, filter=scope),
            ],
            query=_fusion(query),
            filter=scope,
            with_payload=True,
        )
    # one list: dense (or hybrid with nothing sparse to match), or sparse
    return qe.QueryRequest(
        limit=query.limit,
        query=sparse_query if mode == "sparse" else dense_query,
        filter=scope,
        with_payload=True,
        score_threshold=query.score_threshold,
    )


class EdgeStore:
    """A `VectorStore` in a local directory."""

    def __init__(self, path: Path, *, search_threads: int = 0) -> None:
        """`search_threads`: the size of the shard's search pool, stored with the shard
        (0: leave it as stored; a new shard gets the engine's default, one per CPU)."""
        self.path = path
        self._search_threads = search_threads
        self._shard: qe.EdgeShard | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-store")
        self._lock = threading.Lock()  # one shard call at a time, whatever the thread
        self._indexed: set[str] = set()  # payload fields known to have an index

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, partial(self._locked, fn, *args)
        )

    def _locked(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            return fn(*args)

    @property
    def shard(self) -> qe.EdgeShard:
        if self._shard is None:
            raise RagwayError("unavailable", "vector store not opened: call ensure_collection")
        return self._shard

    async def ensure_collection(self, dim: int) -> None:
        await self._run(self._open, dim)

    def _open(self, dim: int) -> None:
        config_path = self.path / CONFIG_FILE
        if config_path.is_file():
            stored = json.loads(config_path.read_text()).get("vectors", {}).get(DENSE, {})
            if stored.get("size") != dim:
                raise dimension_conflict(dim, stored.get("size"))
            if self._shard is None:
                # no config when the pool is left alone: the shard opens as it was stored
                config = self._config(dim) if self._search_threads else None
                self._shard = qe.EdgeShard.load(str(self.path), config)
                if COLLECTIONS not in self._shard.info().payload_schema:  # made before it
                    self._index(self._shard, COLLECTIONS)
            return
        self.path.mkdir(parents=True, exist_ok=True)
        shard = qe.EdgeShard.create(str(self.path), self._config(dim))
        for field in ("file_id", COLLECTIONS):
            self._index(shard, field)
        self._shard = shard
        log.info("vector_store_created", engine="edge", path=str(self.path), dim=dim)

    @staticmethod
    def _index(
        shard: qe.EdgeShard, field: str, kind: qe.PayloadSchemaType = qe.PayloadSchemaType.Keyword
    ) -> None:
        # a keyword index serves a keyword array too (any element matches)
        shard.update(qe.UpdateOperation.create_field_index(field, kind))

    def _index_filtered(self, queries: Sequence[SearchQuery]) -> None:
        """A payload index on each metadata key these queries filter on, made once (the
        first kind asked for a key stays: a later test of another kind is still applied,
        only not counted in advance by the planner)."""
        wanted: dict[str, Any] = {}
        for query in queries:
            wanted.update(wanted_indexes(query.filter))
        if all(path in self._indexed for path in wanted):
            return
        self._indexed.update(self.shard.info().payload_schema)
        for path, kind in wanted.items():
            if path not in self._indexed:
                self._index(self.shard, path, EDGE_SCHEMA[kind])
                self._indexed.add(path)
                log.info("metadata_index_created", engine="edge", field=path, kind=kind)

    def _config(self, dim: int) -> qe.EdgeConfig:
        return qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            max_search_threads=self._search_threads or None,
        )

    async def upsert(self, points: Sequence[ChunkPoint]) -> None:
        if points:
            await self._run(self._upsert, points)

    def _upsert(self, points: Sequence[ChunkPoint]) -> None:
        batch = [
            qe.Point(id=uuid.UUID(p.id), vector=_vectors(p), payload=p.full_payload())
            for p in points
        ]
        self.shard.update(qe.UpdateOperation.upsert_points(batch))

    async def optimize(self) -> None:
        """Build the HNSW and sparse indexes now: for bulk imports only (benches).

        The shard holds the GIL for the whole call (71 s at 30k points, 172 s at 100k
        here): the process stops answering. Every query ragway makes is filtered to a few
        files, which the `file_id` payload index serves without HNSW (0.97 ms unoptimized
        vs 1.31 ms optimized for one file at 100k), so writes never trigger it."""
        await self._run(self.shard.optimize)

    async def delete_file(self, file_id: str) -> None:
        operation = qe.UpdateOperation.delete_points_by_filter(_file_filter([file_id]))
        await self._run(self.shard.update, operation)

    async def set_collections(self, file_ids: Sequence[str], collections: Sequence[str]) -> None:
        if file_ids:
            operation = qe.UpdateOperation.set_payload_by_filter(
                _file_filter(file_ids), {COLLECTIONS: list(collections)}
            )
            await self._run(self.shard.update, operation)

    async def count_lacking(self, file_ids: Sequence[str], collections: Sequence[str]) -> int:
        if not file_ids or not collections:
            return 0
        lacking: list[qe.ConditionType] = [
            qe.Filter(must_not=[_in_collection(c)]) for c in collections
        ]
        request = qe.CountRequest(
            exact=True, filter=qe.Filter(must=[_files(file_ids)], should=lacking)
        )
        return await self._run(self.shard.count, request)

    async def count(self, file_id: str | None = None) -> int:
        request = qe.CountRequest(
            exact=True, filter=_file_filter([file_id]) if file_id is not None else None
        )
        return await self._run(self.shard.count, request)

    async def search(self, query: SearchQuery) -> list[Hit]:
        return (await self.search_many([query]))[0]

    async def search_many(self, queries: Sequence[SearchQuery]) -> list[list[Hit]]:
        if not any_to_search(queries):
            return [[] for _ in queries]
        return await self._run(self._search_many, queries)

    def thread_search(self) -> Callable[[Sequence[SearchQuery]], list[list[Hit]]]:
        return self._search_many_now

    def _search_many_now(self, queries: Sequence[SearchQuery]) -> list[list[Hit]]:
        """`search_many` for a worker thread: blocks, takes the shard's lock itself."""
        if not any_to_search(queries):
            return [[] for _ in queries]
        return self._locked(self._search_many, queries)

    def _search_many(self, queries: Sequence[SearchQuery]) -> list[list[Hit]]:
        """Every query that can match anything in one engine call (and one thread hop)."""
        if any(query.filter is not None for query in queries):
            self._index_filtered(queries)
        requests = [_request(query) if query.has_scope() else None for query in queries]
        asked = [request for request in requests if request is not None]
        if not asked:
            found: list[list[Any]] = []
        elif len(asked) == 1:
            found = [self.shard.query(asked[0])]
        else:
            found = self.shard.query_batch(qe.QueryBatchRequest(asked))
        results = iter(found)
        return [
            [point_hit(point) for point in next(results)] if request is not None else []
            for request in requests
        ]

    async def get_file_chunks(self, file_id: str) -> list[Hit]:
        return whole_file(await self._run(self._scroll_file, file_id, False))

    async def get_file_points(self, file_id: str) -> list[ChunkPoint]:
        return in_chunk_order(
            _point(record) for record in await self._run(self._scroll_file, file_id, True)
        )

    async def copy_file(
        self, source_file_id: str, target_file_id: str, payload: dict[str, Any]
    ) -> int:
        return await copy_points(self, source_file_id, target_file_id, payload)

    def _scroll_file(self, file_id: str, with_vector: bool) -> list[Any]:
        records: list[Any] = []
        offset: Any = None
        while True:
            page, offset = self.shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=SCROLL_PAGE,
                    filter=_file_filter([file_id]),
                    with_payload=True,
                    with_vector=with_vector,
                )
            )
            records.extend(page)
            if offset is None:
                return records

    async def file_counts(self) -> dict[str, int]:
        return await self._run(self._file_counts)

    def _file_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        offset: Any = None
        while True:
            page, offset = self.shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=COUNT_PAGE,
                    with_payload=qe.PayloadSelector.Include(["file_id"]),
                    with_vector=False,
                )
            )
            for record in page:
                file_id = str((record.payload or {}).get("file_id", ""))
                counts[file_id] = counts.get(file_id, 0) + 1
            if offset is None:
                return counts

    async def drop(self) -> None:
        await self.close()
        await asyncio.to_thread(shutil.rmtree, self.path, True)
        log.info("vector_store_dropped", engine="edge", path=str(self.path))

    async def close(self) -> None:
        if self._shard is not None:
            shard, self._shard = self._shard, None
            await self._run(shard.close)
        self._executor.shutdown(wait=True)
