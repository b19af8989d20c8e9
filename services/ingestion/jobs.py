"""One ingestion job: blob → text → chunks → vectors in the store → record `completed`.

The record's status tells the uploader where the job is. Typed failures (an unreadable
file) end it `failed` with a reason; anything else propagates so the worker can hand the
job to the queue again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from catalog.files import FileCatalog, blob_name, text_name
from common.errors import RagwayError
from contracts.files import FileData, FileRecord
from ingestion.chunking import ChunkingOptions
from ingestion.documents import Chunk, ProcessedFile
from ingestion.errors import ExtractionError
from ingestion.extraction import ExtractionLimits
from ingestion.pipeline import process_file_in_thread
from ingestion.vectors import VectorWriter

log = structlog.get_logger()

FINISHED = ("completed", "failed")


class FileGone(Exception):
    """The file was deleted while its job waited or ran: nothing left to do."""


class JobFailed(Exception):
    """The file cannot be ingested; `reason` is shown to the person who uploaded it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobProcessor:
    def __init__(
        self,
        catalog: FileCatalog,
        writer: VectorWriter,
        *,
        limits: ExtractionLimits,
        chunking: ChunkingOptions,
        max_file_bytes: int,
    ) -> None:
        self.catalog = catalog
        self.writer = writer
        self._limits = limits
        self._chunking = chunking
        self._max_file_bytes = max_file_bytes

    async def process(self, file_id: str) -> None:
        """Run one job to the end; raises `FileGone`, `JobFailed`, or anything unexpected."""
        record = await self.catalog.get(file_id)
        if record is None:
            raise FileGone(file_id)
        if record.data.status in FINISHED:
            log.info("job_already_finished", file_id=file_id, status=record.data.status)
            return
        started = time.perf_counter()
        await self._set(file_id, lambda data: FileData(status="processing"))
        processed = await self._extract(record)
        await self.catalog.blobs.put_bytes(text_name(file_id), processed.text.encode())
        total = len(processed.chunks)
        await self._set(file_id, lambda data: FileData(status="processing", chunks_total=total))
        reused = await self._reuse_identical(record, total)
        if not reused:
            await self._embed_and_write(record, processed.chunks)
        finished = FileData(status="completed", chunks_done=total, chunks_total=total)
        await self._set(file_id, lambda data: finished)
        await self.catalog.remember_hash(record.hash, file_id)
        log.info(
            "file_ingested",
            file_id=file_id,
            kind=processed.kind,
            characters=processed.characters,
            chunks=total,
            reused_vectors=reused,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    async def fail(self, file_id: str, reason: str) -> bool:
        """Mark the file failed (unless it finished meanwhile); False when it is gone."""

        def change(data: FileData) -> FileData:
            if data.status == "completed":
                return data
            return FileData(status="failed", error=reason, chunks_total=data.chunks_total)

        try:
            await self._set(file_id, change)
        except FileGone:
            return False
        log.info("file_failed", file_id=file_id, reason=reason)
        return True

    async def _extract(self, record: FileRecord) -> ProcessedFile:
        try:
            blob = await self.catalog.blobs.get_bytes(blob_name(record.id), self._max_file_bytes)
        except RagwayError as exc:
            if exc.code == "not_found":
                if await self.catalog.get(record.id) is None:
                    raise FileGone(record.id) from None
                raise JobFailed("The file's content is missing; upload it again") from None
            if exc.code == "too_large":
                limit_mb = self._max_file_bytes // (1024 * 1024)
                raise JobFailed(f"The file is larger than {limit_mb} MB") from None
            raise
        try:
            return await process_file_in_thread(
                blob,
                record.filename or record.meta.name,
                record.meta.content_type,
                limits=self._limits,
                chunking=self._chunking,
            )
        except ExtractionError as exc:
            raise JobFailed(exc.reason) from None

    async def _reuse_identical(self, record: FileRecord, total: int) -> bool:
        """Copy the vectors of a completed file with the same content, when there is one."""
        source_id = await self.catalog.file_with_hash(record.hash) if record.hash else None
        if source_id is None or source_id == record.id:
            return False
        source = await self.catalog.get(source_id)
        if source is None or source.data.status != "completed":
            return False
        try:
            copied = await self.writer.copy(source_id, record.id, record.user_id, record.filename)
        except RagwayError as exc:
            if exc.code != "not_found":
                raise
            await self._ensure_exists(record.id)
            return False  # the source's vectors are gone: embed after all
        if copied != total:
            # Different chunking settings since: the copy would not match this file's text.
            log.info("copied_vectors_differ", file_id=record.id, copied=copied, chunks=total)
            await self.writer.delete(record.id)
            return False
        return True

    async def _embed_and_write(self, record: FileRecord, chunks: list[Chunk]) -> None:
        size = self.writer.batch_size
        for start in range(0, len(chunks), size):
            vectors = await self.writer.embed(chunks[start : start + size])
            try:
                await self.writer.upsert(record.id, record.user_id, record.filename, vectors)
            except RagwayError as exc:
                if exc.code == "not_found":
                    await self._ensure_exists(record.id)
                raise
            done = start + len(vectors)
            await self._set(record.id, _progress(done))

    async def _ensure_exists(self, file_id: str) -> None:
        if await self.catalog.get(file_id) is None:
            raise FileGone(file_id)

    async def _set(self, file_id: str, change: Callable[[FileData], FileData]) -> None:
        def apply(record: FileRecord) -> FileRecord:
            record.data = change(record.data)
            return record

        try:
            await self.catalog.update(file_id, apply)
        except RagwayError as exc:
            if exc.code == "not_found":
                raise FileGone(file_id) from None
            raise


def _progress(done: int) -> Callable[[FileData], FileData]:
    return lambda data: FileData(
        status="processing", chunks_done=done, chunks_total=data.chunks_total
    )
