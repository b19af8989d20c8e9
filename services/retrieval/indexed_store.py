"""The store the service writes through: the active collection, and the one being built.

While a collection is built for a newly configured model (`rebuild.py`), every write
lands in both: vectors made by one model are written as they are to that model's
collection and embedded again with the other model for the other collection (a model
that cannot be loaded gets the chunk keyword-only: BM25 finds it, dense after the swap).
Reads (counts, scope checks, full-context reads) see the active collection. Each write
during a rebuild bumps its files' versions under one lock, which the rebuild takes for
its own writes: a file whose chunks changed while the rebuild embedded them is done
again, so no stale or deleted chunk ends in the new collection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import structlog

from common.errors import RagwayError
from embedding.embedder import Embedder
from vectorstore.points import ChunkPoint, Hit, SearchQuery
from vectorstore.store import VectorStore

log = structlog.get_logger()


def other_model(model: str, have: str) -> RagwayError:
    return RagwayError(
        "conflict",
        f"dense vectors from model {model!r}, but this deployment's index is built by"
        f" {have!r}: restart ingestion with the same RAGWAY_EMBEDDING_MODEL as retrieval",
    )


class IndexedStore:
    """A `VectorStore` over the active collection and, during a rebuild, the new one."""

    def __init__(self, active: VectorStore, active_model: str, embedder: Embedder) -> None:
        self.active = active
        self.active_model = active_model
        self.building: VectorStore | None = None
        self.building_model = ""
        self.configured_model = embedder.model_name
        self._embedders: dict[str, Embedder] = {embedder.model_name: embedder}
        self._lock = asyncio.Lock()
        self._versions: dict[str, int] = {}

    def start_building(self, store: VectorStore, old_embedder: Embedder | None) -> None:
        """Write to `store` (the configured model's new collection) as well from now on."""
        self.building = store
        self.building_model = self.configured_model
        if old_embedder is not None:
            self._embedders[old_embedder.model_name] = old_embedder

    def version(self, file_id: str) -> int:
        return self._versions.get(file_id, 0)

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """No write through this store runs meanwhile (the rebuild's own writes, the swap)."""
        async with self._lock:
            yield

    def swap(self) -> VectorStore:
        """Make the built collection the active one (under `exclusive`); the old store."""
        if self.building is None:
            raise RuntimeError("no collection is being built")
        old, self.active, self.building = self.active, self.building, None
        self.active_model, self.building_model = self.building_model, ""
        for name in [name for name in self._embedders if name != self.active_model]:
            del self._embedders[name]  # the old model: no longer needed for writes
        self._versions.clear()
        return old

    async def _each(self, files: Iterable[str], write: Callable[[VectorStore], Any]) -> None:
        """`write` on the active store, and on the building one during a rebuild."""
        if self.building is None:
            await write(self.active)
            return
        async with self._lock:
            for file_id in files:
                self._versions[file_id] = self._versions.get(file_id, 0) + 1
            await write(self.active)
            if self.building is not None:
                await write(self.building)

    # --- writes ---------------------------------------------------------------------------

    async def upsert(self, points: Sequence[ChunkPoint]) -> None:
        """Points whose dense vectors come from the configured model."""
        await self.write(points, self.configured_model)

    async def write(self, points: Sequence[ChunkPoint], model: str) -> None:
        """Points whose dense vectors `model` made ("" or None: the configured model)."""
        model = model or self.configured_model
        if self.building is None:
            if model != self.active_model:
                raise other_model(model, self.active_model)
            await self.active.upsert(points)
            return
        if model not in (self.active_model, self.building_model):
            raise other_model(model, f"{self.active_model} (building {self.building_model})")
        # the other side's vectors are computed before the lock: embedding takes a while
        versions = {model: list(points)}
        for side in (self.active_model, self.building_model):
            if side not in versions:
                versions[side] = await self.embedded(points, side)
        async with self._lock:
            for file_id in {p.file_id for p in points}:
                self._versions[file_id] = self._versions.get(file_id, 0) + 1
            await self.active.upsert(await self._for(versions, points, self.active_model))
            if self.building is not None:
                building = await self._for(versions, points, self.building_model)
                await self.building.upsert(building)

    async def _for(
        self, versions: dict[str, list[ChunkPoint]], points: Sequence[ChunkPoint], model: str
    ) -> list[ChunkPoint]:
        found = versions.get(model)
        return found if found is not None else await self.embedded(points, model)

    async def embedded(self, points: Sequence[ChunkPoint], model: str) -> list[ChunkPoint]:
        """The points with dense vectors from `model` (keyword-only when it is not loaded);
        keyword-only points stay keyword-only (their dense vectors come in a later write)."""
        embedder = self._embedders.get(model)
        wanted = [n for n, p in enumerate(points) if p.dense]
        result = list(points)
        if not wanted:
            return result
        if embedder is None:
            for n in wanted:
                result[n] = msgspec.structs.replace(points[n], dense=[])
            return result
        vectors = await asyncio.to_thread(
            embedder.embed_documents, [points[n].text for n in wanted]
        )
        for n, vector in zip(wanted, vectors, strict=True):
            result[n] = msgspec.structs.replace(points[n], dense=vector)
        return result

    async def delete_file(self, file_id: str) -> None:
        await self._each([file_id], lambda store: store.delete_file(file_id))

    async def set_collections(self, file_ids: Sequence[str], collections: Sequence[str]) -> None:
        await self._each(file_ids, lambda store: store.set_collections(file_ids, collections))

    async def copy_file(
        self, source_file_id: str, target_file_id: str, payload: dict[str, Any]
    ) -> int:
        """Each collection copies its own vectors; the count is the active one's."""
        if self.building is None:
            return await self.active.copy_file(source_file_id, target_file_id, payload)
        async with self._lock:
            self._versions[target_file_id] = self._versions.get(target_file_id, 0) + 1
            count = await self.active.copy_file(source_file_id, target_file_id, payload)
            await self.building.copy_file(source_file_id, target_file_id, payload)
            return count

    # --- reads: the active collection -----------------------------------------------------

    async def ensure_collection(self, dim: int) -> None:
        await self.active.ensure_collection(dim)

    async def count(self, file_id: str | None = None) -> int:
        return await self.active.count(file_id)

    async def count_lacking(self, file_ids: Sequence[str], collections: Sequence[str]) -> int:
        return await self.active.count_lacking(file_ids, collections)

    async def search(self, query: SearchQuery) -> list[Hit]:
        return await self.active.search(query)

    async def search_many(self, queries: Sequence[SearchQuery]) -> list[list[Hit]]:
        return await self.active.search_many(queries)

    def thread_search(self) -> Callable[[Sequence[SearchQuery]], list[list[Hit]]] | None:
        return self.active.thread_search()

    async def get_file_chunks(self, file_id: str) -> list[Hit]:
        return await self.active.get_file_chunks(file_id)

    async def get_file_points(self, file_id: str) -> list[ChunkPoint]:
        return await self.active.get_file_points(file_id)

    async def file_counts(self) -> dict[str, int]:
        return await self.active.file_counts()

    async def drop(self) -> None:
        raise RagwayError("invalid", "the service's own index is never dropped whole")

    async def close(self) -> None:
        """Close both collections' stores."""
        building, self.building = self.building, None
        if building is not None:
            await building.close()
        await self.active.close()
