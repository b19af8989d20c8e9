"""A collection's files in bulk: a searchable page of them, adding many at once, and
Open WebUI's incremental sync (diff a local manifest by content hash, then clean up).

Built on `KnowledgeHandlers` (the same access checks and compare-and-set changes as the
single-file routes) and the settled-records mirror (`KnownFiles`), so a page of a
collection's files reads no record from the bucket once the mirror is live.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from catalog.metadata_match import matches
from common.errors import invalid
from contracts.auth import Principal
from contracts.files import DeleteFileRequest, FileRecord
from contracts.knowledge import (
    BatchWarnings,
    FileOutcome,
    Knowledge,
    KnowledgeBatchReply,
    KnowledgeFileList,
    KnowledgeFilesBatch,
    KnowledgeFilesQuery,
    StatusReply,
    SyncAdded,
    SyncCleanupRequest,
    SyncDeleted,
    SyncDiffReply,
    SyncDiffRequest,
    SyncModified,
)
from retrieval.access import can_read_file
from retrieval.knowledge import KnowledgeHandlers
from retrieval.knowledge_store import KnowledgeStore
from retrieval.known_files import KnownFiles

log = structlog.get_logger()

MAX_BATCH = 10_000  # file ids in one batch add or cleanup
MAX_MANIFEST = 100_000
MAX_PAGE_SIZE = 1_000

DeleteFile = Callable[[DeleteFileRequest], Awaitable[object]]


def sync_path(record: FileRecord) -> str:
    """Where the file sat in the synced folder: the `path` its upload's metadata named."""
    path = record.meta.data.get("path")
    return path.strip("/") if isinstance(path, str) else ""


def content_hash(record: FileRecord) -> str:
    """The SHA-256 a sync manifest compares: the client's `file_hash`, or the bytes' own."""
    sent = record.meta.data.get("file_hash")
    return sent if isinstance(sent, str) and sent else record.hash


class KnowledgeFileHandlers:
    def __init__(
        self,
        knowledge: KnowledgeHandlers,
        store: KnowledgeStore,
        files: KnownFiles,
        delete_file: DeleteFile,
    ) -> None:
        self._knowledge = knowledge
        self._store = store
        self._files = files
        self._delete_file = delete_file

    async def files(self, request: KnowledgeFilesQuery) -> KnowledgeFileList:
        """A page of the collection's files, newest first, names filtered by `query`,
        upload metadata by `filter`."""
        if not 1 <= request.limit <= MAX_PAGE_SIZE or request.skip < 0:
            raise invalid(f"A page holds 1 to {MAX_PAGE_SIZE} files")
        knowledge = await self._knowledge.readable(request.principal, request.knowledge_id)
        records = await self._files.listing(knowledge.data.file_ids)
        if request.query:
            needle = request.query.casefold()
            records = [r for r in records if needle in r.meta.name.casefold()]
        if request.filter is not None:
            records = [r for r in records if matches(request.filter, r.meta.data)]
        records.sort(key=lambda r: (r.updated_at, r.created_at), reverse=True)
        page = records[request.skip : request.skip + request.limit]
        return KnowledgeFileList(items=page, total=len(records))

    async def batch_add(self, request: KnowledgeFilesBatch) -> KnowledgeBatchReply:
        """Link every readable, not failed file in one change; the others say why not."""
        if not request.file_ids:
            raise invalid("Name at least one file to add")
        if len(request.file_ids) > MAX_BATCH:
            raise invalid(f"At most {MAX_BATCH} files per batch")
        await self._knowledge.writable(request.principal, request.knowledge_id)
        outcomes: dict[str, FileOutcome] = {}
        for file_id in request.file_ids:
            if file_id not in outcomes:
                outcomes[file_id] = await self._outcome(request.principal, file_id)
        addable = [fid for fid, outcome in outcomes.items() if outcome.status == "added"]

        def change(current: Knowledge) -> Knowledge | None:
            linked = set(current.data.file_ids)
            for file_id in addable:
                if file_id in linked:
                    outcomes[file_id].status = "unchanged"
            new = [fid for fid in addable if fid not in linked]
            if not new:
                return None
            current.data.file_ids = [*current.data.file_ids, *new]
            return current

        reply = await self._knowledge.store_change(request.principal, request.knowledge_id, change)
        results = list(outcomes.values())
        failed = [f"{o.file_id}: {o.error}" for o in results if o.status == "failed"]
        log.info(
            "knowledge_batch_added",
            knowledge_id=request.knowledge_id,
            added=sum(o.status == "added" for o in results),
            failed=len(failed),
        )
        return KnowledgeBatchReply(
            **{field: getattr(reply, field) for field in reply.__struct_fields__},
            results=results,
            warnings=BatchWarnings(message="Some files failed to process", errors=failed)
            if failed
            else None,
        )

    async def _outcome(self, principal: Principal, file_id: str) -> FileOutcome:
        record = await self._files.get(file_id) if file_id else None
        if record is None or not can_read_file(principal, record):
            return FileOutcome(file_id=file_id, status="failed", error="File not found")
        if record.data.status == "failed":
            why = record.data.error or "it could not be processed"
            return FileOutcome(file_id=file_id, status="failed", error=f"File failed: {why}")
        return FileOutcome(file_id=file_id, status="added")

    async def sync_diff(self, request: SyncDiffRequest) -> SyncDiffReply:
        """Which manifest entries are new, changed (by content hash) or gone."""
        if len(request.manifest) > MAX_MANIFEST:
            raise invalid(f"A manifest lists at most {MAX_MANIFEST} files")
        knowledge = await self._knowledge.writable(request.principal, request.knowledge_id)
        indexed: dict[tuple[str, str], FileRecord] = {}
        for record in await self._files.listing(knowledge.data.file_ids):
            indexed[(sync_path(record), record.meta.name)] = record
        added: list[SyncAdded] = []
        modified: list[SyncModified] = []
        unmodified = 0
        seen: set[tuple[str, str]] = set()
        for entry in request.manifest:
            key = (entry.path.strip("/"), entry.filename)
            seen.add(key)
            found = indexed.get(key)
            if found is None:
                added.append(SyncAdded(filename=entry.filename, path=entry.path))
            elif content_hash(found) != entry.checksum:
                modified.append(
                    SyncModified(filename=entry.filename, path=entry.path, stale_file_id=found.id)
                )
            else:
                unmodified += 1
        deleted = [
            SyncDeleted(file_id=record.id, filename=record.meta.name)
            for key, record in indexed.items()
            if key not in seen
        ]
        return SyncDiffReply(
            added=added, modified=modified, deleted=deleted, unmodified_count=unmodified
        )

    async def sync_cleanup(self, request: SyncCleanupRequest) -> StatusReply:
        """Unlink stale files; delete those no other collection holds, if the caller may."""
        if len(request.file_ids) > MAX_BATCH:
            raise invalid(f"At most {MAX_BATCH} files per cleanup")
        await self._knowledge.writable(request.principal, request.knowledge_id)
        stale = set(request.file_ids)

        def change(current: Knowledge) -> Knowledge | None:
            kept = [fid for fid in current.data.file_ids if fid not in stale]
            if len(kept) == len(current.data.file_ids):
                return None
            current.data.file_ids = kept
            return current

        before = await self._knowledge.readable(request.principal, request.knowledge_id)
        unlinked = stale & set(before.data.file_ids)
        await self._knowledge.store_change(request.principal, request.knowledge_id, change)
        still_linked = {fid for k in await self._store.list_all() for fid in k.data.file_ids}
        deleted = 0
        for file_id in sorted(unlinked - still_linked):
            record = await self._files.get(file_id)
            if record is None or not can_read_file(request.principal, record):
                continue  # another user's file: unlinked, not deleted
            await self._delete_file(DeleteFileRequest(principal=request.principal, file_id=file_id))
            deleted += 1
        log.info(
            "knowledge_sync_cleaned",
            knowledge_id=request.knowledge_id,
            unlinked=len(unlinked),
            deleted=deleted,
        )
        return StatusReply(status=True)
