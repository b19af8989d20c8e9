"""A Qdrant server through `qdrant-client` (deployments); local mode stands in for it in tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from embedding.vectors import SparseVector
from vectorstore.filters import wanted_indexes
from vectorstore.points import COLLECTIONS, DENSE, SPARSE, ChunkPoint, Hit, SearchQuery
from vectorstore.server_filters import SERVER_SCHEMA, server_filter
from vectorstore.store import (
    COUNT_PAGE,
    RRF_K,
    SCROLL_PAGE,
    check_query,
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


def _files(file_ids: Sequence[str]) -> models.FieldCondition:
    return models.FieldCondition(key="file_id", match=models.MatchAny(any=list(file_ids)))


def _file_filter(file_ids: Sequence[str]) -> models.Filter:
    return models.Filter(must=[_files(file_ids)])


def _in_collection(collection: str) -> models.FieldCondition:
    return models.FieldCondition(key=COLLECTIONS, match=models.MatchValue(value=collection))


def _scope(query: SearchQuery) -> models.Filter:
    """A collection (one indexed condition, minus its excluded files), or a list of files;
    and the query's metadata filter, when it has one."""
    on_metadata: list[models.Condition] = (
        [server_filter(query.filter)] if query.filter is not None else []
    )
    if query.collection:
        excluded: list[models.Condition] = (
            [_files(query.exclude_file_ids)] if query.exclude_file_ids else []
        )
        return models.Filter(
            must=[_in_collection(query.collection), *on_metadata], must_not=excluded or None
        )
    return models.Filter(must=[_files(query.file_ids), *on_metadata])


def _point(record: models.Record) -> ChunkPoint:
    vectors = record.vector if isinstance(record.vector, dict) else {}
    dense = vectors.get(DENSE, [])
    sparse = vectors.get(SPARSE)
    return stored_point(
        dict(record.payload or {}),
        [float(v) for v in dense] if isinstance(dense, list) else [],  # type: ignore[arg-type]
        SparseVector(indices=list(sparse.indices), values=[float(v) for v in sparse.values])
        if isinstance(sparse, models.SparseVector)
        else SparseVector(indices=[], values=[]),
    )


def _vectors(point: ChunkPoint) -> dict[str, Any]:
    """The point's named vectors; a keyword-only point (no dense yet) has BM25 alone."""
    vectors: dict[str, Any] = {
        SPARSE: models.SparseVector(indices=point.sparse.indices, values=point.sparse.values)
    }
    if point.dense:
        vectors[DENSE] = point.dense
    return vectors


def _fusion(query: SearchQuery) -> models.RrfQuery | models.FusionQuery:
    if query.fusion == "dbsf":
        return models.FusionQuery(fusion=models.Fusion.DBSF)
    return models.RrfQuery(rrf=models.Rrf(k=RRF_K, weights=rrf_weights(query)))


def _request(query: SearchQuery) -> models.QueryRequest | None:
    """The server's request for a checked query with files (None: nothing can match)."""
    scope = _scope(query)
    sparse = query.sparse if query.sparse is not None and query.sparse.indices else None
    sparse_vector = (
        models.SparseVector(indices=sparse.indices, values=sparse.values)
        if sparse is not None
        else None
    )
    mode = query.effective_mode()
    if mode == "sparse" and sparse_vector is None:
        return None  # nothing to match: the query was only stopwords
    if mode == "dense" or (mode == "hybrid" and sparse_vector is None):
        return models.QueryRequest(
            query=query.dense,
            using=DENSE,
            filter=scope,
            limit=query.limit,
            with_payload=True,
            score_threshold=query.score_threshold,
        )
    if mode == "sparse":
        return models.QueryRequest(
            query=sparse_vector,
            using=SPARSE,
            filter=scope,
            limit=query.limit,
            with_payload=True,
            score_threshold=query.score_threshold,
        )
    candidates = prefetch_limit(query.limit)
    return models.QueryRequest(
        prefetch=[
            models.Prefetch(
                query=query.dense,
                using=DENSE,
                filter=scope,
                limit=candidates,
                score_threshold=query.score_threshold,
            ),
            models.Prefetch(query=sparse_vector, using=SPARSE, filter=scope, limit=candidates),
        ],
        query=_fusion(query),
        filter=scope,
        limit=query.limit,
        with_payload=True,
    )


class ServerStore:
    """A `VectorStore` in one collection of a Qdrant server."""

    def __init__(
        self, client: AsyncQdrantClient, collection: str, *, payload_index: bool = True
    ) -> None:
        self.client = client
        self.collection = collection
        self._payload_index = payload_index
        self._indexed: set[str] = set()  # payload fields known to have an index

    @classmethod
    def connect(cls, url: str, collection: str, api_key: str = "") -> ServerStore:
        """A store on a Qdrant server."""
        return cls(AsyncQdrantClient(url=url, api_key=api_key or None), collection)

    @classmethod
    def local(cls, collection: str, path: str | None = None) -> ServerStore:
        """qdrant-client's local mode (in memory, or in `path`): the server's API, for tests.

        Local mode scans instead of using payload indexes (and warns when one is made),
        so none is made.
        """
        client = AsyncQdrantClient(path=path) if path else AsyncQdrantClient(location=":memory:")
        return cls(client, collection, payload_index=False)

    async def ensure_collection(self, dim: int) -> None:
        if not await self.client.collection_exists(self.collection):
            try:
                await self.client.create_collection(
                    self.collection,
                    vectors_config={
                        DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)
                    },
                    sparse_vectors_config={
                        SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)
                    },
                )
                log.info("vector_store_created", engine="server", collection=self.collection)
            except UnexpectedResponse as exc:
                if exc.status_code != 409:  # another replica created it meanwhile
                    raise
        info = await self.client.get_collection(self.collection)
        if self._payload_index:
            for field in ("file_id", COLLECTIONS):  # also on a collection made before one
                if field not in (info.payload_schema or {}):
                    await self.client.create_payload_index(
                        self.collection, field, models.PayloadSchemaType.KEYWORD, wait=True
                    )
        vectors = info.config.params.vectors
        have = vectors[DENSE].size if isinstance(vectors, dict) and DENSE in vectors else None
        if have != dim:
            raise dimension_conflict(dim, have)

    async def upsert(self, points: Sequence[ChunkPoint]) -> None:
        if not points:
            return
        batch = [
            models.PointStruct(id=p.id, vector=_vectors(p), payload=p.full_payload())
            for p in points
        ]
        await self.client.upsert(self.collection, points=batch, wait=True)

    async def delete_file(self, file_id: str) -> None:
        await self.client.delete(
            self.collection,
            points_selector=models.FilterSelector(filter=_file_filter([file_id])),
            wait=True,
        )

    async def set_collections(self, file_ids: Sequence[str], collections: Sequence[str]) -> None:
        if file_ids:
            await self.client.set_payload(
                self.collection,
                payload={COLLECTIONS: list(collections)},
                points=models.FilterSelector(filter=_file_filter(file_ids)),
                wait=True,
            )

    async def count_lacking(self, file_ids: Sequence[str], collections: Sequence[str]) -> int:
        if not file_ids or not collections:
            return 0
        lacking: list[models.Condition] = [
            models.Filter(must_not=[_in_collection(c)]) for c in collections
        ]
        scope = models.Filter(must=[_files(file_ids)], should=lacking)
        result = await self.client.count(self.collection, count_filter=scope, exact=True)
        return result.count

    async def count(self, file_id: str | None = None) -> int:
        scope = _file_filter([file_id]) if file_id is not None else None
        result = await self.client.count(self.collection, count_filter=scope, exact=True)
        return result.count

    async def search(self, query: SearchQuery) -> list[Hit]:
        return (await self.search_many([query]))[0]

    async def search_many(self, queries: Sequence[SearchQuery]) -> list[list[Hit]]:
        for query in queries:
            check_query(query)
        if self._payload_index:
            await self._index_filtered(queries)
        requests = [_request(query) if query.has_scope() else None for query in queries]
        asked = [request for request in requests if request is not None]
        if not asked:
            return [[] for _ in queries]
        # one round trip for all of them
        responses = iter(await self.client.query_batch_points(self.collection, requests=asked))
        return [
            [point_hit(point) for point in next(responses).points] if request is not None else []
            for request in requests
        ]

    async def _index_filtered(self, queries: Sequence[SearchQuery]) -> None:
        """A payload index on each metadata key these queries filter on (see
        `vectorstore.filters`), made once; a replica racing to make it is harmless."""
        wanted: dict[str, Any] = {}
        for query in queries:
            wanted.update(wanted_indexes(query.filter))
        if all(path in self._indexed for path in wanted):
            return
        info = await self.client.get_collection(self.collection)
        self._indexed.update(info.payload_schema or {})
        for path, kind in wanted.items():
            if path not in self._indexed:
                await self.client.create_payload_index(
                    self.collection, path, SERVER_SCHEMA[kind], wait=True
                )
                self._indexed.add(path)
                log.info("metadata_index_created", engine="server", field=path, kind=kind)

    def thread_search(self) -> None:
        return None  # the client is asynchronous: searches stay on the event loop

    async def get_file_chunks(self, file_id: str) -> list[Hit]:
        return whole_file(await self._scroll_file(file_id, with_vectors=False))

    async def get_file_points(self, file_id: str) -> list[ChunkPoint]:
        return in_chunk_order(
            _point(record) for record in await self._scroll_file(file_id, with_vectors=True)
        )

    async def copy_file(
        self, source_file_id: str, target_file_id: str, payload: dict[str, Any]
    ) -> int:
        return await copy_points(self, source_file_id, target_file_id, payload)

    async def _scroll_file(self, file_id: str, *, with_vectors: bool) -> list[models.Record]:
        records: list[models.Record] = []
        offset: Any = None
        while True:
            page, offset = await self.client.scroll(
                self.collection,
                scroll_filter=_file_filter([file_id]),
                limit=SCROLL_PAGE,
                offset=offset,
                with_payload=True,
                with_vectors=with_vectors,
            )
            records.extend(page)
            if offset is None:
                return records

    async def file_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        offset: Any = None
        while True:
            page, offset = await self.client.scroll(
                self.collection,
                limit=COUNT_PAGE,
                offset=offset,
                with_payload=models.PayloadSelectorInclude(include=["file_id"]),
                with_vectors=False,
            )
            for record in page:
                file_id = str((record.payload or {}).get("file_id", ""))
                counts[file_id] = counts.get(file_id, 0) + 1
            if offset is None:
                return counts

    async def drop(self) -> None:
        await self.client.delete_collection(self.collection)
        log.info("vector_store_dropped", engine="server", collection=self.collection)
        await self.close()

    async def close(self) -> None:
        await self.client.close()
