"""The one small interface both engines implement, and checks they share."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import msgspec

from common.errors import RagwayError
from embedding.vectors import SparseVector
from vectorstore.points import ChunkPoint, Hit, SearchQuery

SCROLL_PAGE = 256
COUNT_PAGE = 2048  # points per page when only their file ids are read
RRF_K = 60  # the usual reciprocal-rank-fusion constant; both engines get it explicitly


class VectorStore(Protocol):
    """Chunks of files with a dense and a BM25 vector each, searched within a set of files."""

    async def ensure_collection(self, dim: int) -> None:
        """Create the collection (dense `dim`-d cosine, BM25 with IDF), or check it."""
        ...

    async def upsert(self, points: Sequence[ChunkPoint]) -> None:
        """Write chunks; a chunk already stored (same file and index) is overwritten.

        A point with an empty `dense` is stored with its BM25 vector alone: sparse search
        finds it, dense search skips it until it is written again with its dense vector.
        """
        ...

    async def delete_file(self, file_id: str) -> None:
        """Remove every chunk of one file."""
        ...

    async def count(self, file_id: str | None = None) -> int:
        """Chunks stored, of one file or in all."""
        ...

    async def set_collections(self, file_ids: Sequence[str], collections: Sequence[str]) -> None:
        """Set the `collections` payload of every chunk of these files (one write)."""
        ...

    async def count_lacking(self, file_ids: Sequence[str], collections: Sequence[str]) -> int:
        """Chunks of these files whose `collections` payload lacks one of `collections`."""
        ...

    async def search(self, query: SearchQuery) -> list[Hit]:
        """The best chunks in `query`'s scope, best first."""
        ...

    async def search_many(self, queries: Sequence[SearchQuery]) -> list[list[Hit]]:
        """`search` for each query (same results, same order), in one engine call.

        Every query is checked first: one invalid query fails them all.
        """
        ...

    def thread_search(self) -> Callable[[Sequence[SearchQuery]], list[list[Hit]]] | None:
        """A blocking `search_many` that any worker thread may call, or None when the
        engine is only reached asynchronously (a server). With it, a caller that computes
        the query vectors in a thread searches there as well: one thread hop, not two."""
        ...

    async def get_file_chunks(self, file_id: str) -> list[Hit]:
        """All chunks of a file in chunk order ("full context"); scores are 1.0."""
        ...

    async def get_file_points(self, file_id: str) -> list[ChunkPoint]:
        """All chunks of a file with their vectors, in chunk order."""
        ...

    async def copy_file(
        self, source_file_id: str, target_file_id: str, payload: dict[str, Any]
    ) -> int:
        """Store a file's chunks again, vectors included, under another file id.

        `payload` is merged over each copied chunk's payload (e.g. a new owner and name);
        ids derive from the target file id, so copying twice overwrites. Returns the
        number of chunks copied (0: the source holds none). Nothing is re-embedded.
        """
        ...

    async def file_counts(self) -> dict[str, int]:
        """Every file with chunks stored, and how many (one pass over the collection)."""
        ...

    async def drop(self) -> None:
        """Delete the whole collection and close the store (a retired model's index)."""
        ...

    async def close(self) -> None: ...


def check_query(query: SearchQuery) -> None:
    """Reject a query the chosen mode cannot run."""
    if query.limit < 1:
        raise RagwayError("invalid", "limit must be at least 1")
    if query.dense_weight < 0 or query.sparse_weight < 0:
        raise RagwayError("invalid", "fusion weights must not be negative")
    if query.mode == "hybrid" and query.dense_weight <= 0 and query.sparse_weight <= 0:
        raise RagwayError("invalid", "hybrid search needs a positive weight")
    mode = query.effective_mode()
    if mode in ("dense", "hybrid") and query.dense is None:
        raise RagwayError("invalid", f"{mode} search needs a dense vector")
    if mode in ("sparse", "hybrid") and query.sparse is None:
        raise RagwayError("invalid", f"{mode} search needs a sparse vector")


def any_to_search(queries: Sequence[SearchQuery]) -> bool:
    """Check every query (one invalid query fails them all); whether any has a scope."""
    for query in queries:
        check_query(query)
    return any(query.has_scope() for query in queries)


def rrf_weights(query: SearchQuery) -> list[float] | None:
    """RRF weights for [dense, sparse]; None when equal (the engines' plain RRF)."""
    if query.dense_weight == query.sparse_weight:
        return None
    return [query.dense_weight, query.sparse_weight]


def prefetch_limit(limit: int) -> int:
    """Candidates taken from each engine before fusion."""
    return max(limit * 4, 40)


def point_hit(point: Any, score: float | None = None) -> Hit:
    """A hit from either engine's scored point or record (both have id, score, payload)."""
    return Hit(
        id=str(point.id),
        score=float(point.score if score is None else score),
        payload=dict(point.payload or {}),
    )


def whole_file(records: Sequence[Any]) -> list[Hit]:
    """A file's stored records as full-context hits: score 1.0, in chunk order."""
    return sorted((point_hit(record, 1.0) for record in records), key=lambda h: h.chunk_index)


def in_chunk_order(points: Iterable[ChunkPoint]) -> list[ChunkPoint]:
    return sorted(points, key=lambda point: point.chunk_index)


async def copy_points(
    store: VectorStore, source_file_id: str, target_file_id: str, payload: dict[str, Any]
) -> int:
    """`VectorStore.copy_file` on any engine: read the points, write them retargeted."""
    points = retarget(await store.get_file_points(source_file_id), target_file_id, payload)
    await store.upsert(points)
    return len(points)


def stored_point(payload: dict[str, Any], dense: list[float], sparse: SparseVector) -> ChunkPoint:
    """A chunk as it was written, rebuilt from a stored point's payload and vectors."""
    extra = {k: v for k, v in payload.items() if k not in ("file_id", "chunk_index", "text")}
    return ChunkPoint(
        file_id=str(payload.get("file_id", "")),
        chunk_index=int(payload.get("chunk_index", 0)),
        text=str(payload.get("text", "")),
        dense=dense,
        sparse=sparse,
        payload=extra,
    )


def retarget(points: list[ChunkPoint], file_id: str, payload: dict[str, Any]) -> list[ChunkPoint]:
    """The same chunks and vectors under another file id (so new point ids), `payload` merged."""
    return [
        msgspec.structs.replace(p, file_id=file_id, payload={**p.payload, **payload})
        for p in points
    ]


def dimension_conflict(want: int, have: int | None) -> RagwayError:
    return RagwayError(
        "conflict",
        f"the vector collection holds {have}-d vectors but the embedding model makes {want}-d:"
        " re-index with the new model into a new collection",
    )
