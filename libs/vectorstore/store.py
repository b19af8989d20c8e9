"""The one small interface both engines implement, and checks they share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from common.errors import RagwayError
from vectorstore.points import ChunkPoint, Hit, SearchQuery

SCROLL_PAGE = 256
RRF_K = 60  # the usual reciprocal-rank-fusion constant; both engines get it explicitly


class VectorStore(Protocol):
    """Chunks of files with a dense and a BM25 vector each, searched within a set of files."""

    async def ensure_collection(self, dim: int) -> None:
        """Create the collection (dense `dim`-d cosine, BM25 with IDF), or check it."""
        ...

    async def upsert(self, points: Sequence[ChunkPoint]) -> None:
        """Write chunks; a chunk already stored (same file and index) is overwritten."""
        ...

    async def delete_file(self, file_id: str) -> None:
        """Remove every chunk of one file."""
        ...

    async def count(self, file_id: str | None = None) -> int:
        """Chunks stored, of one file or in all."""
        ...

    async def search(self, query: SearchQuery) -> list[Hit]:
        """The best chunks among `query.file_ids`, best first."""
        ...

    async def get_file_chunks(self, file_id: str) -> list[Hit]:
        """All chunks of a file in chunk order ("full context"); scores are 1.0."""
        ...

    async def close(self) -> None: ...


def check_query(query: SearchQuery) -> None:
    """Reject a query the chosen mode cannot run."""
    if query.limit < 1:
        raise RagwayError("invalid", "limit must be at least 1")
    if query.mode in ("dense", "hybrid") and query.dense is None:
        raise RagwayError("invalid", f"{query.mode} search needs a dense vector")
    if query.mode in ("sparse", "hybrid") and query.sparse is None:
        raise RagwayError("invalid", f"{query.mode} search needs a sparse vector")


def prefetch_limit(limit: int) -> int:
    """Candidates taken from each engine before fusion."""
    return max(limit * 4, 40)


def sort_chunks(hits: list[Hit]) -> list[Hit]:
    return sorted(hits, key=lambda hit: hit.chunk_index)


def dimension_conflict(want: int, have: int | None) -> RagwayError:
    return RagwayError(
        "conflict",
        f"the vector collection holds {have}-d vectors but the embedding model makes {want}-d:"
        " re-index with the new model into a new collection",
    )
