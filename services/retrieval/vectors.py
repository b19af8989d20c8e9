"""Vector writes for ingestion workers (this service is the store's one writer); file deletion."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
import structlog

from catalog.files import FileCatalog
from common.errors import forbidden, invalid
from contracts.auth import Ok
from contracts.files import DeleteFileRequest, FileRecord, UserDataPurge, UserDataPurged
from contracts.retrieval import (
    CopyFileVectors,
    FileVectorsRef,
    StoredChunks,
    UpsertChunks,
    VectorsWritten,
)
from embedding.embedder import Embedder
from embedding.vectors import SparseVector
from retrieval.access import can_read_file
from retrieval.errors import file_not_found
from retrieval.indexed_store import IndexedStore
from retrieval.knowledge import KnowledgeHandlers
from retrieval.known_files import KnownFiles
from retrieval.memberships import Memberships
from vectorstore.points import COLLECTIONS, FILE_METADATA, ChunkPoint

log = structlog.get_logger()

# Payload keys the service sets itself: chunk metadata cannot override them.
RESERVED_PAYLOAD = ("file_id", "owner", "chunk_index", "text", "name", COLLECTIONS, FILE_METADATA)


def _payload(owner: str, name: str, metadata: dict[str, object]) -> dict[str, object]:
    extra = {k: v for k, v in metadata.items() if k not in RESERVED_PAYLOAD}
    return {**extra, "owner": owner, "name": name}


def _with_file_metadata(points: list[ChunkPoint], record: FileRecord) -> list[ChunkPoint]:
    """Every chunk carries its upload's `metadata` (the record's), which filters test."""
    return [
        msgspec.structs.replace(p, payload={**p.payload, FILE_METADATA: record.meta.data})
        for p in points
    ]


def _in_collections(points: list[ChunkPoint], collections: list[str]) -> list[ChunkPoint]:
    return [
        msgspec.structs.replace(p, payload={**p.payload, COLLECTIONS: collections}) for p in points
    ]


class VectorHandlers:
    def __init__(
        self,
        store: IndexedStore,
        embedder: Embedder,
        files: FileCatalog,
        known: KnownFiles,
        knowledge: KnowledgeHandlers,
        memberships: Memberships,
    ) -> None:
        self._memberships = memberships
        self._store = store
        self._embedder = embedder
        self._files = files
        self._known = known
        self._knowledge = knowledge

    async def upsert(self, request: UpsertChunks) -> VectorsWritten:
        """Write a file's chunks; ids derive from (file id, chunk index), so repeats overwrite."""
        # vectors of another model (an ingestion worker not restarted yet during a rebuild)
        # are checked by the store: written to that model's collection, or refused
        dim = self._embedder.dimension
        ours = request.model in ("", self._embedder.model_name)
        points = []
        for chunk in request.chunks:
            if ours and chunk.dense and len(chunk.dense) != dim:  # empty: keyword-only, dense later
                raise invalid(
                    f"chunk {chunk.index}: dense vector has {len(chunk.dense)} dims, not {dim}"
                )
            if len(chunk.sparse_indices) != len(chunk.sparse_values):
                raise invalid(f"chunk {chunk.index}: sparse indices and values differ in length")
            points.append(
                ChunkPoint(
                    file_id=request.file_id,
                    chunk_index=chunk.index,
                    text=chunk.text,
                    dense=chunk.dense,
                    sparse=SparseVector(indices=chunk.sparse_indices, values=chunk.sparse_values),
                    payload=_payload(request.owner, request.name, chunk.metadata),
                )
            )
        await self._write(request.file_id, points, request.model)
        log.info("vectors_upserted", file_id=request.file_id, count=len(points))
        return VectorsWritten(count=len(points))

    async def _write(self, file_id: str, points: list[ChunkPoint], model: str) -> None:
        """Write only for a file that exists (see `_guarded`)."""

        async def write(record: FileRecord) -> int:
            # tagged with the file's collections as of the write (`Memberships.writing`)
            async with self._memberships.writing(file_id) as collections:
                tagged = _in_collections(_with_file_metadata(points, record), collections)
                await self._store.write(tagged, model)
            return len(points)

        await self._guarded(file_id, write)

    async def _guarded(self, file_id: str, write: Callable[[FileRecord], Awaitable[int]]) -> int:
        """Write only for a file that exists, and undo it if the file was deleted meanwhile.

        A worker may still be embedding a file its owner deletes: without the second check
        its late write would leave vectors that no record owns.
        """
        record = await self._files.get(file_id)
        if record is None:
            raise file_not_found(file_id)
        written = await write(record)
        if await self._files.get(file_id) is None:
            await self._store.delete_file(file_id)
            raise file_not_found(file_id)
        return written

    async def copy(self, request: CopyFileVectors) -> VectorsWritten:
        """Store the source file's chunks again under the target file (identical content).

        The stored vectors are copied as they are: nothing is embedded again.
        """
        target = request.target_file_id
        if await self._store.count(request.source_file_id) == 0:
            raise file_not_found(request.source_file_id)
        await self._store.delete_file(target)

        async def write(record: FileRecord) -> int:
            async with self._memberships.writing(target) as collections:
                payload = {
                    "owner": request.owner,
                    "name": request.name,
                    COLLECTIONS: collections,
                    FILE_METADATA: record.meta.data,
                }
                return await self._store.copy_file(request.source_file_id, target, payload)

        count = await self._guarded(target, write)
        if count == 0:  # the source was deleted meanwhile
            raise file_not_found(request.source_file_id)
        log.info(
            "vectors_copied", source_file_id=request.source_file_id, file_id=target, count=count
        )
        return VectorsWritten(count=count)

    async def delete(self, request: FileVectorsRef) -> VectorsWritten:
        before = await self._store.count(request.file_id)
        await self._store.delete_file(request.file_id)
        return VectorsWritten(count=before)

    async def stored(self, request: FileVectorsRef) -> StoredChunks:
        """Points and chunk indexes held for a file: a count above len(indexes) is a duplicate."""
        count = await self._store.count(request.file_id)
        chunks = await self._store.get_file_chunks(request.file_id)
        indexes = [hit.chunk_index for hit in chunks]
        return StoredChunks(file_id=request.file_id, count=count, indexes=indexes)

    async def delete_file(self, request: DeleteFileRequest) -> Ok:
        """Delete a file everywhere: vectors, knowledge links, record, blobs, hash index."""
        record = await self._files.get(request.file_id)
        if record is None or not can_read_file(request.principal, record):
            raise file_not_found(request.file_id)
        await self._remove_file(record)
        return Ok()

    async def purge_user(self, request: UserDataPurge) -> UserDataPurged:
        """A deleted user's files (everywhere, as `delete_file`) and their collections.

        Idempotent: an admin may repeat it after a partial failure. Collections of other
        users lose the deleted user's files; the deleted user's own collections go.
        """
        if request.principal.role != "admin":
            raise forbidden("Only administrators may do this")
        files = await self._files.list_for(request.user_id)
        for record in files:
            await self._remove_file(record)
        collections = await self._knowledge.delete_owned_by(request.user_id)
        log.info(
            "user_data_purged",
            user_id=request.user_id,
            files=len(files),
            collections=collections,
        )
        return UserDataPurged(files=len(files), collections=collections)

    async def _remove_file(self, record: FileRecord) -> None:
        await self._store.delete_file(record.id)
        unlinked = await self._knowledge.forget_file(record.id)
        await self._files.delete(record.id)
        self._known.forget(record.id)  # the watch would take a moment longer
        log.info("file_deleted", file_id=record.id, collections_unlinked=unlinked)
