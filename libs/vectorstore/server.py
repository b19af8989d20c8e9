"""A Qdrant server through `qdrant-client` (deployments); local mode stands in for it in tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from embedding.vectors import SparseVector
from vectorstore.points import DENSE, SPARSE, ChunkPoint, Hit, SearchQuery
from vectorstore.store import (
    RRF_K,
    SCROLL_PAGE,
    check_query,
    dimension_conflict,
    prefetch_limit,
    retarget,
    rrf_weights,
    sort_chunks,
    stored_point,
)

log = structlog.get_logger(__name__)


def _file_filter(file_ids: Sequence[str]) -> models.Filter:
    return models.Filter(
        must=[models.FieldCondition(key="file_id", match=models.MatchAny(any=list(file_ids)))]
    )


def _hit(point: Any, score: float | None = None) -> Hit:
    return Hit(
        id=str(point.id),
        score=float(point.score if score is None else score),
        payload=dict(point.payload or {}),
    )


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


def _fusion(query: SearchQuery) -> models.RrfQuery | models.FusionQuery:
    if query.fusion == "dbsf":
        return models.FusionQuery(fusion=models.Fusion.DBSF)
    return models.RrfQuery(rrf=models.Rrf(k=RRF_K, weights=rrf_weights(query)))


class ServerStore:
    """A `VectorStore` in one collection of a Qdrant server."""

    def __init__(
        self, client: AsyncQdrantClient, collection: str, *, payload_index: bool = True
    ) -> None:
        self.client = client
        self.collection = collection
        self._payload_index = payload_index

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
            if self._payload_index:
                await self.client.create_payload_index(
                    self.collection, "file_id", models.PayloadSchemaType.KEYWORD, wait=True
                )
        info = await self.client.get_collection(self.collection)
        vectors = info.config.params.vectors
        have = vectors[DENSE].size if isinstance(vectors, dict) and DENSE in vectors else None
        if have != dim:
            raise dimension_conflict(dim, have)

    async def upsert(self, points: Sequence[ChunkPoint]) -> None:
        if not points:
            return
        batch = [
            models.PointStruct(
                id=p.id,
                vector={
                    DENSE: p.dense,
                    SPARSE: models.SparseVector(indices=p.sparse.indices, values=p.sparse.values),
                },
                payload=p.full_payload(),
            )
            for p in points
        ]
        await self.client.upsert(self.collection, points=batch, wait=True)

    async def delete_file(self, file_id: str) -> None:
        await self.client.delete(
            self.collection,
            points_selector=models.FilterSelector(filter=_file_filter([file_id])),
            wait=True,
        )

    async def count(self, file_id: str | None = None) -> int:
        scope = _file_filter([file_id]) if file_id is not None else None
        result = await self.client.count(self.collection, count_filter=scope, exact=True)
        return result.count

    async def search(self, query: SearchQuery) -> list[Hit]:
        check_query(query)
        if not query.file_ids:
            return []
        scope = _file_filter(query.file_ids)
        sparse = query.sparse if query.sparse is not None and query.sparse.indices else None
        sparse_vector = (
            models.SparseVector(indices=sparse.indices, values=sparse.values)
            if sparse is not None
            else None
        )
        mode = query.effective_mode()
        if mode == "sparse" and sparse_vector is None:
            return []  # nothing to match: the query was only stopwords
        if mode == "dense" or (mode == "hybrid" and sparse_vector is None):
            response = await self.client.query_points(
                self.collection,
                query=query.dense,
                using=DENSE,
                query_filter=scope,
                limit=query.limit,
                with_payload=True,
                score_threshold=query.score_threshold,
            )
        elif mode == "sparse":
            response = await self.client.query_points(
                self.collection,
                query=sparse_vector,
                using=SPARSE,
                query_filter=scope,
                limit=query.limit,
                with_payload=True,
                score_threshold=query.score_threshold,
            )
        else:
            candidates = prefetch_limit(query.limit)
            response = await self.client.query_points(
                self.collection,
                prefetch=[
                    models.Prefetch(
                        query=query.dense,
                        using=DENSE,
                        filter=scope,
                        limit=candidates,
                        score_threshold=query.score_threshold,
                    ),
                    models.Prefetch(
                        query=sparse_vector, using=SPARSE, filter=scope, limit=candidates
                    ),
                ],
                query=_fusion(query),
                query_filter=scope,
                limit=query.limit,
                with_payload=True,
            )
        return [_hit(point) for point in response.points]

    async def get_file_chunks(self, file_id: str) -> list[Hit]:
        records = await self._scroll_file(file_id, with_vectors=False)
        return sort_chunks([_hit(record, 1.0) for record in records])

    async def get_file_points(self, file_id: str) -> list[ChunkPoint]:
        records = await self._scroll_file(file_id, with_vectors=True)
        points = [_point(record) for record in records]
        return sorted(points, key=lambda p: p.chunk_index)

    async def copy_file(
        self, source_file_id: str, target_file_id: str, payload: dict[str, Any]
    ) -> int:
        points = retarget(await self.get_file_points(source_file_id), target_file_id, payload)
        await self.upsert(points)
        return len(points)

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

    async def close(self) -> None:
        await self.client.close()
