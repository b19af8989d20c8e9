"""Embed chunks in batches and send them to the retrieval service, the store's one writer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import msgspec
import structlog

from common.bus import Bus
from common.errors import RagwayError
from contracts import subjects
from contracts.retrieval import (
    ChunkVector,
    CopyFileVectors,
    FileVectorsRef,
    UpsertChunks,
)
from embedding.embedder import Embedder
from ingestion.documents import Chunk

log = structlog.get_logger()

T = TypeVar("T")
RETRYABLE = ("unavailable", "timeout")
BACKOFF_START = 0.25
BACKOFF_MAX = 4.0


class EmbeddingStats:
    """What this process embedded: tests and the benchmark read it."""

    def __init__(self) -> None:
        self.chunks_embedded = 0
        self.chunks_copied = 0
        self.embed_seconds = 0.0


class VectorWriter:
    """Embeds on its own threads (CPU-bound) and writes through VECTORS_UPSERT / VECTORS_COPY."""

    def __init__(
        self,
        bus: Bus,
        embedder: Embedder,
        pool: ThreadPoolExecutor,
        *,
        timeout: float,
        attempts: int,
    ) -> None:
        self._bus = bus
        self._embedder = embedder
        self._pool = pool
        self._timeout = timeout
        self._attempts = attempts
        self.stats = EmbeddingStats()

    @property
    def batch_size(self) -> int:
        return self._embedder.settings.batch_size

    async def keyword_vectors(self, chunks: Sequence[Chunk]) -> list[ChunkVector]:
        """BM25 vectors of chunks (no dense yet), on a thread of their own.

        Not on the embedding thread(s): BM25 is ~100x cheaper than the dense model, and
        a file must not wait behind another file's dense batches to become searchable.
        """
        return await asyncio.to_thread(_keyword_vectors, self._embedder, chunks)

    async def add_dense(self, vectors: Sequence[ChunkVector]) -> list[ChunkVector]:
        """The same chunks with their dense vectors, computed on the embedding thread(s)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        embedded = await loop.run_in_executor(self._pool, _add_dense, self._embedder, vectors)
        self.stats.embed_seconds += loop.time() - started
        self.stats.chunks_embedded += len(vectors)
        return embedded

    async def upsert(self, file_id: str, owner: str, name: str, vectors: list[ChunkVector]) -> int:
        request = UpsertChunks(
            file_id=file_id,
            owner=owner,
            name=name,
            chunks=vectors,
            model=self._embedder.model_name,
        )
        written = await self._with_retries(
            lambda: self._bus.call(subjects.VECTORS_UPSERT, request, timeout=self._timeout)
        )
        return written.count

    async def copy(self, source_file_id: str, file_id: str, owner: str, name: str) -> int:
        """Reuse the vectors of identical content; `not_found` when the source has none."""
        request = CopyFileVectors(
            source_file_id=source_file_id, target_file_id=file_id, owner=owner, name=name
        )
        written = await self._with_retries(
            lambda: self._bus.call(subjects.VECTORS_COPY, request, timeout=self._timeout)
        )
        self.stats.chunks_copied += written.count
        return written.count

    async def delete(self, file_id: str) -> int:
        """Remove whatever vectors the file has (before writing a different set)."""
        written = await self._with_retries(
            lambda: self._bus.call(
                subjects.VECTORS_DELETE, FileVectorsRef(file_id=file_id), timeout=self._timeout
            )
        )
        return written.count

    async def _with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        """Retry while the retrieval service is away or slow (a restart, a busy store)."""
        delay = BACKOFF_START
        for attempt in range(1, self._attempts + 1):
            try:
                return await call()
            except RagwayError as exc:
                if exc.code not in RETRYABLE or attempt == self._attempts:
                    raise
                log.warning("vector_write_retry", attempt=attempt, code=exc.code, delay=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)
        raise AssertionError("unreachable")


def _keyword_vectors(embedder: Embedder, chunks: Sequence[Chunk]) -> list[ChunkVector]:
    sparse = embedder.sparse_documents([chunk.text for chunk in chunks])
    return [
        ChunkVector(
            index=chunk.index,
            text=chunk.text,
            dense=[],
            sparse_indices=s.indices,
            sparse_values=s.values,
            metadata=dict(chunk.metadata),
        )
        for chunk, s in zip(chunks, sparse, strict=True)
    ]


def _add_dense(embedder: Embedder, vectors: Sequence[ChunkVector]) -> list[ChunkVector]:
    dense = embedder.embed_documents([vector.text for vector in vectors])
    return [
        msgspec.structs.replace(vector, dense=d) for vector, d in zip(vectors, dense, strict=True)
    ]
