"""File records in JetStream KV, updated with compare-and-set so writers never clobber."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

import msgspec
from nats.js import JetStreamContext

from catalog.blobs import BlobStore
from catalog.buckets import CAS_ATTEMPTS, Bucket, ensure_object_store
from catalog.owners import IndexPage, OwnerIndex
from common.errors import RagwayError
from contracts.files import FileRecord

_encode = msgspec.json.Encoder().encode
_decode_record = msgspec.json.Decoder(FileRecord).decode

# Records a whole listing reads (and a streamed reply writes) at a time.
LIST_CHUNK = 1000


def now() -> int:
    return int(time.time())


def blob_name(file_id: str) -> str:
    return f"blob/{file_id}"


def text_name(file_id: str) -> str:
    return f"text/{file_id}"


def chunks_name(file_id: str) -> str:
    """The file's chunks as ingestion extracted them once, for its range jobs."""
    return f"chunks/{file_id}"


class FileCatalog:
    """Records (`<prefix>_files`), a content-hash index, an index of each user's files
    (`<prefix>_file_owners`, see `catalog.owners`), the blobs of uploaded files and the
    bytes each user has stored (`<prefix>_storage_usage`, for the quota)."""

    def __init__(
        self,
        records: Bucket,
        hashes: Bucket,
        owners: OwnerIndex,
        blobs: BlobStore,
        usage: StorageUsage,
    ) -> None:
        self._records = records
        self._hashes = hashes
        self._owners = owners
        self.blobs = blobs
        self.usage = usage

    @classmethod
    async def open(
        cls, js: JetStreamContext, prefix: str = "ragway", replicas: int = 1
    ) -> FileCatalog:
        records = await Bucket.open(js, f"{prefix}_files", replicas)
        hashes = await Bucket.open(js, f"{prefix}_file_hashes", replicas)
        owners = OwnerIndex(await Bucket.open(js, f"{prefix}_file_owners", replicas), "files")
        usage = StorageUsage(await Bucket.open(js, f"{prefix}_storage_usage", replicas))
        await ensure_object_store(js, f"{prefix}_blobs", replicas)
        catalog = cls(records, hashes, owners, BlobStore(js, f"{prefix}_blobs"), usage)
        await owners.ensure_backfilled(catalog._backfill_owners)
        return catalog

    async def _backfill_owners(self) -> None:
        """Index the records written before the owner index existed (once per bucket)."""
        for record in await self.list_all():
            await self._owners.add(record.user_id, record.created_at, record.id)

    async def create(self, record: FileRecord) -> None:
        # indexed first: an index entry without a record is skipped (and a record
        # without one would be missing from its owner's listings)
        await self._owners.add(record.user_id, record.created_at, record.id)
        try:
            await self._records.kv.create(record.id, _encode(record))
        except BaseException:
            await self._owners.remove(record.user_id, record.created_at, record.id)
            raise

    async def get(self, file_id: str) -> FileRecord | None:
        if not _valid_key(file_id):
            return None
        value = await self._records.get(file_id)
        return None if value is None else _decode_record(value)

    async def require(self, file_id: str) -> FileRecord:
        record = await self.get(file_id)
        if record is None:
            raise RagwayError("not_found", "File not found")
        return record

    async def update(self, file_id: str, change: Callable[[FileRecord], FileRecord]) -> FileRecord:
        """Apply `change` to the current record atomically (retrying on concurrent writes)."""

        def stamped(record: FileRecord) -> FileRecord:
            updated = change(record)
            updated.updated_at = now()
            return updated

        busy = RagwayError("unavailable", "File record is too busy to update")
        changed = await self._records.update(file_id, _decode_record, stamped, busy)
        if changed is None:
            raise RagwayError("not_found", "File not found")
        return changed[1]

    async def delete(self, file_id: str) -> None:
        await self.blobs.delete(blob_name(file_id))
        await self.blobs.delete(text_name(file_id))
        await self.blobs.delete(chunks_name(file_id))
        record: FileRecord | None = None
        for _ in range(CAS_ATTEMPTS):  # a worker may update the record meanwhile
            found = await self._records.entry(file_id) if _valid_key(file_id) else None
            if found is None:
                break
            record = _decode_record(found.value)
            # only the delete that removed the record gives its bytes back to the quota
            if await self._records.delete(file_id, found.revision):
                await self.forget_hash(record.hash, file_id)
                await self.usage.release(record.user_id, record.meta.size)
                break
        await self._records.purge(file_id)
        if record is not None:
            await self._owners.remove(record.user_id, record.created_at, file_id)

    async def list_all(self) -> list[FileRecord]:
        """Every record, read in one pass over the bucket (not a read per file)."""
        values = await self._records.latest()
        return [_decode_record(value) for value in values.values() if value]

    async def list_for(self, user_id: str) -> list[FileRecord]:
        """The user's files, newest first (read through the owner index, not the bucket)."""
        return [record async for chunk in self.chunks_for(user_id) for record in chunk]

    async def chunks_for(
        self, user_id: str, size: int = LIST_CHUNK
    ) -> AsyncIterator[list[FileRecord]]:
        """The user's files, newest first, `size` records at a time: the owner index's ids
        once, then each chunk's records (a reply can be written while the next is read)."""
        ids = await self._owners.ids(user_id)
        for start in range(0, len(ids), size):
            yield await self.get_many(ids[start : start + size], user_id)

    async def page_for(self, user_id: str, skip: int, limit: int) -> tuple[list[FileRecord], int]:
        """`limit` of the user's files after the first `skip`, newest first, and the total."""
        page: IndexPage = await self._owners.page(user_id, skip, limit)
        return await self.get_many(page.ids, user_id), page.total

    async def get_many(self, file_ids: list[str], user_id: str | None = None) -> list[FileRecord]:
        """The records of these files that exist (owned by `user_id` when given), in order,
        read in one pipelined pass (`Bucket.get_many`)."""
        values = await self._records.get_many([f for f in file_ids if _valid_key(f)])
        found = [_decode_record(value) for value in values if value is not None]
        return [r for r in found if user_id is None or r.user_id == user_id]

    async def remember_hash(self, sha256: str, file_id: str) -> None:
        """Index a completed file by content so identical uploads reuse its vectors."""
        await self._hashes.put(sha256, file_id.encode())

    async def file_with_hash(self, sha256: str) -> str | None:
        if not _valid_key(sha256):
            return None  # e.g. a record without a hash yet: nothing is indexed under it
        value = await self._hashes.get(sha256)
        return None if value is None else value.decode()

    async def forget_hash(self, sha256: str, file_id: str) -> None:
        if await self.file_with_hash(sha256) == file_id:
            await self._hashes.purge(sha256)

    async def follow(self) -> AsyncIterator[tuple[str, FileRecord | None] | None]:
        """Every record, one None once those are in, then every change: (id, None once deleted)."""
        async with contextlib.aclosing(self._records.follow()) as changes:
            async for change in changes:
                if change is None:
                    yield None
                else:
                    file_id, value = change
                    yield file_id, None if value is None else _decode_record(value)

    async def watch(self, file_id: str) -> AsyncIterator[FileRecord | None]:
        """Yield the record now and after every change (None once deleted)."""
        watcher = await self._records.kv.watch(file_id)
        try:
            async for entry in watcher:
                if entry is None:
                    continue
                if not entry.value:
                    yield None
                    continue
                yield _decode_record(entry.value)
        finally:
            await watcher.stop()


def _valid_key(key: str) -> bool:
    return (
        bool(key)
        and len(key) <= 128
        and key.isascii()
        and all(c.isalnum() or c in "-_" for c in key)
    )


_decode_bytes = msgspec.json.Decoder(int).decode


class StorageUsage:
    """Bytes of uploads each user holds, changed with compare-and-set by every gateway
    (uploads) and retrieval instance (deletions), so the quota holds across instances."""

    def __init__(self, bucket: Bucket) -> None:
        self._bucket = bucket

    async def used(self, user_id: str) -> int:
        value = await self._bucket.get(user_id) if _valid_key(user_id) else None
        return 0 if value is None else _decode_bytes(value)

    async def reserve(self, user_id: str, size: int, quota: int) -> None:
        """Count `size` more bytes for `user_id`, or raise `over_quota` counting nothing."""

        def grown(used: int) -> int:
            if used + size > quota:
                raise over_quota(quota, used)
            return used + size

        await self._change(user_id, grown)

    async def release(self, user_id: str, size: int) -> None:
        await self._change(user_id, lambda used: max(used - size, 0))

    async def _change(self, user_id: str, change: Callable[[int], int]) -> None:
        if not _valid_key(user_id):
            return
        busy = RagwayError("unavailable", "Storage usage is changing too fast; try again")
        for _ in range(2):  # lost a create to another writer: update what it wrote
            if await self._bucket.update(user_id, _decode_bytes, change, busy) is not None:
                return
            if await self._bucket.claim(user_id, _encode(change(0))):
                return
        raise busy


def over_quota(quota: int, used: int) -> RagwayError:
    return RagwayError(
        "over_quota",
        f"Your storage quota of {quota / 2**20:,.0f} MiB is used up "
        f"({used / 2**20:,.1f} MiB stored); delete files to upload more",
    )
