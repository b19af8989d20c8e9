"""Build the configured model's collection from the stored chunks, then swap it in.

The chunk texts are already in the active collection: each file's chunks are read from
there, embedded with the new model (BM25 vectors and payload copied as they are) and
written to the new collection; nothing is extracted again. Searches keep using the
active collection meanwhile, and every write reaches both (`IndexedStore`). When every
file holds the same number of chunks in both collections (checked under the write lock,
files deleted meanwhile removed from the new one), the `active` record points to the new
collection, searches move to it and the old collection is dropped. Progress is in the
`building` record (KV `<prefix>_vector_index`) and `index_rebuild_*` log lines; a
restart resumes (files already complete in the new collection are skipped).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import msgspec
import structlog

from embedding.embedder import Embedder
from retrieval.indexed_store import IndexedStore
from retrieval.model_index import ACTIVE, BUILDING, IndexBook, IndexRecord
from vectorstore.points import ChunkPoint
from vectorstore.store import VectorStore

log = structlog.get_logger()

EMBED_SLICE = 64  # chunks embedded per thread hop (a big file does not hold a core long)
PROGRESS_EVERY_S = 2.0


class Rebuild:
    def __init__(
        self,
        book: IndexBook,
        store: IndexedStore,
        record: IndexRecord,
        embedder: Embedder,
        swapped: Callable[[VectorStore], Awaitable[None]],
    ) -> None:
        self._book = book
        self._store = store
        self.record = record
        self._embedder = embedder
        self._swapped = swapped
        self._reported = 0.0

    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            log.info("index_rebuild_paused", model=self.record.model, done=self.record.files_done)
            raise
        except Exception:
            # searches stay on the active collection; the next start tries again
            log.exception("index_rebuild_failed", model=self.record.model)

    async def _run(self) -> None:
        record = self.record
        building = self._building()
        active = await self._store.active.file_counts()
        built = await building.file_counts()
        pending = [f for f, n in active.items() if built.get(f) != n]
        record.files_total = len(active)
        record.files_done = len(active) - len(pending)
        log.info(
            "index_rebuild_started",
            model=record.model,
            collection=record.collection,
            files=len(active),
            already_built=record.files_done,
        )
        await self._progress(force=True)
        while True:
            for file_id in pending:
                record.chunks_done += await self._copy(file_id)
                record.files_done += 1
                await self._progress()
            async with self._store.exclusive():
                active = await self._store.active.file_counts()
                built = await building.file_counts()
                for file_id in [f for f in built if f not in active]:  # deleted meanwhile
                    await building.delete_file(file_id)
                pending = [f for f, n in active.items() if built.get(f) != n]
                if not pending:
                    old = self._store.swap()
                    now = time.time()
                    ready = msgspec.structs.replace(
                        record,
                        state="ready",
                        files_total=len(active),
                        files_done=len(active),
                        updated_at=now,
                        finished_at=now,
                    )
                    await self._book.put(ACTIVE, ready)
                    await self._book.delete(BUILDING)
                    self.record = ready
                    break
            record.files_total = record.files_done + len(pending)
        log.info(
            "index_rebuild_swapped",
            model=record.model,
            collection=record.collection,
            files=self.record.files_total,
            chunks=record.chunks_done,
            seconds=round(time.time() - record.started_at, 1),
        )
        await self._swapped(old)

    def _building(self) -> VectorStore:
        building = self._store.building
        if building is None:
            raise RuntimeError("no collection is being built")
        return building

    async def _copy(self, file_id: str) -> int:
        """One file's chunks, embedded with the new model, into the new collection; done
        again when a write touched the file meanwhile."""
        while True:
            version = self._store.version(file_id)
            points = await self._store.active.get_file_points(file_id)
            texts = [point.text for point in points]
            vectors: list[list[float]] = []
            for start in range(0, len(texts), EMBED_SLICE):
                part = texts[start : start + EMBED_SLICE]
                vectors += await asyncio.to_thread(self._embedder.embed_documents, part)
            rebuilt: list[ChunkPoint] = [
                msgspec.structs.replace(point, dense=vector)
                for point, vector in zip(points, vectors, strict=True)
            ]
            async with self._store.exclusive():
                if self._store.version(file_id) != version:
                    continue
                building = self._building()
                await building.delete_file(file_id)
                await building.upsert(rebuilt)
                return len(rebuilt)

    async def _progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._reported < PROGRESS_EVERY_S:
            return
        self._reported = now
        self.record.updated_at = time.time()
        await self._book.put(BUILDING, self.record)
        log.info(
            "index_rebuild_progress",
            model=self.record.model,
            files_done=self.record.files_done,
            files_total=self.record.files_total,
            chunks=self.record.chunks_done,
        )
