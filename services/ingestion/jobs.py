"""One ingestion job, in two phases, so a file is searchable long before it is embedded.

1. Keyword phase (seconds): blob → text → chunks → BM25 vectors; every chunk is stored
   with its text and BM25 vector alone, and the record says `keyword_searchable`.
2. Dense phase (the model's speed): dense vectors batch by batch, written over the same
   points (ids derive from file and chunk index, so writing again is idempotent), with
   progress per chunk range in the record; `completed` once every chunk has one. A file
   with more chunks than one range hands its ranges out as jobs of their own, so every
   worker can embed a part of one big file.

A redelivered job never writes keyword-only points over dense ones: the keyword phase
runs only while the record is not yet `keyword_searchable`, and a range resumes after
the chunks its record says are embedded. Typed failures (an unreadable file) end the
file `failed` with a reason; anything else propagates so the worker can hand the job to
the queue again.

Every stage boundary is a compare-and-set of the record that also looks for a cancel
(`Cancelled`: the worker deletes what the job wrote) and for a newer run of the file
(`StaleJob`: a retry or re-index took over; this job leaves the file alone).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

import msgspec
import structlog

from catalog.files import FileCatalog, blob_name, chunks_name, text_name
from common.errors import RagwayError
from contracts.files import FileData, FileRecord, IngestJob, Stage
from contracts.retrieval import ChunkVector
from ingestion.child import ChildLimits, process_file_in_child
from ingestion.chunking import ChunkingOptions
from ingestion.documents import ProcessedFile
from ingestion.errors import ExtractionError
from ingestion.extraction import ExtractionLimits
from ingestion.vectors import VectorWriter

log = structlog.get_logger()

FINISHED = ("completed", "failed")
# Keyword-only points per VECTORS_UPSERT request: bounded by text size, well under the
# NATS payload limit (8 MB in our deployments, 1 MB by default).
KEYWORD_BATCH_CHARS = 256 * 1024
EDITED_NAME = "edited.md"  # how an edited text is read: Markdown

HandOut = Callable[[IngestJob], Awaitable[None]]
_encode_processed = msgspec.msgpack.Encoder().encode
_decode_processed = msgspec.msgpack.Decoder(ProcessedFile).decode


class FileGone(Exception):
    """The file was deleted while its job waited or ran: nothing left to do."""


class Cancelled(Exception):
    """The file's processing was cancelled: stop here, delete what was written."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StaleJob(Exception):
    """Nothing left for the job: its file finished, or the job belongs to an earlier run
    of the file (retried or re-indexed since)."""


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
        child: ChildLimits,
        max_file_bytes: int,
        hand_out: HandOut,
        range_chunks: int,
    ) -> None:
        self.catalog = catalog
        self.writer = writer
        self._limits = limits
        self._chunking = chunking
        self._child = child
        self.extractions = 0  # files read by a parser (range jobs read stored chunks)
        self.files = {"completed": 0, "failed": 0}  # files this instance finished (/metrics)
        self._max_file_bytes = max_file_bytes
        self._hand_out = hand_out
        self._range_chunks = range_chunks

    async def process(self, job: IngestJob) -> None:
        """Run one job to the end; raises `FileGone`, `JobFailed`, or anything unexpected."""
        record = await self.catalog.get(job.file_id)
        if record is None:
            raise FileGone(job.file_id)
        if record.data.run != job.run:
            raise StaleJob(job.file_id)
        if record.data.status in FINISHED:
            log.info("job_already_finished", file_id=job.file_id, status=record.data.status)
            raise StaleJob(job.file_id)
        if job.stop > job.start:
            processed = await self._extracted(record)
            await self._embed_range(record, processed, job.start, job.stop)
        else:
            await self._index_file(record, job.request_id)

    async def _index_file(self, record: FileRecord, request_id: str) -> None:
        """The keyword phase, then the dense one here or handed out in ranges."""
        file_id, run = record.id, record.data.run
        started = time.perf_counter()
        await self._advance(record, "extracting")

        async def extracted() -> None:
            await self._advance(record, "chunking")

        processed = await self._extract(record, extracted)
        total = len(processed.chunks)
        await self._advance(record, "indexing", chunks_total=total)
        if record.data.keyword_searchable:
            log.info("keyword_phase_already_done", file_id=file_id, chunks=total)
        else:
            if not record.meta.edited:  # an edited file's text is already the one to keep
                await self.catalog.blobs.put_bytes(text_name(file_id), processed.text.encode())
            if not record.meta.edited and await self._reuse_identical(record, total):
                await self._complete(record, total, reused=True)
                return
            await self._write_keyword_points(record, processed)
            await self._advance(record, "embedding", chunks_total=total, keyword_searchable=True)
            log.info(
                "file_keyword_searchable",
                file_id=file_id,
                kind=processed.kind,
                characters=processed.characters,
                chunks=total,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
        ranges = chunk_ranges(total, self._range_chunks)
        if len(ranges) <= 1:
            await self._embed_range(record, processed, 0, total)
            return
        # Extracted once: every range job reads these chunks instead of parsing again.
        await self.catalog.blobs.put_bytes(chunks_name(file_id), _encode_processed(processed))
        for first, stop in ranges:
            await self._hand_out(
                IngestJob(file_id=file_id, request_id=request_id, start=first, stop=stop, run=run)
            )
        log.info("dense_ranges_queued", file_id=file_id, ranges=len(ranges), chunks=total)

    async def _write_keyword_points(self, record: FileRecord, processed: ProcessedFile) -> None:
        """Every chunk with its text and BM25 vector, in requests of bounded size."""
        vectors = await self.writer.keyword_vectors(processed.chunks)
        batch: list[ChunkVector] = []
        size = 0
        for vector in vectors:
            batch.append(vector)
            size += len(vector.text)
            if size >= KEYWORD_BATCH_CHARS:
                await self._upsert(record, batch)
                batch, size = [], 0
        await self._upsert(record, batch)

    async def _embed_range(
        self, record: FileRecord, processed: ProcessedFile, first: int, stop: int
    ) -> None:
        """Dense vectors for chunks [first, stop), after those the record says are done."""
        total = len(processed.chunks)
        if total != record.data.chunks_total and record.data.chunks_total:
            # Chunking settings changed since the keyword phase: the ranges no longer fit.
            raise JobFailed("The file's chunks changed while it was processed; upload it again")
        key = str(first)
        latest = await self.catalog.get(record.id)
        if latest is None:
            raise FileGone(record.id)
        resume = first + latest.data.dense_ranges.get(key, 0)
        if resume > first:
            log.info("dense_range_resumed", file_id=record.id, first=first, resume=resume)
        chunks = processed.chunks[resume:stop]
        size = self.writer.batch_size
        # An empty rest (a redelivery after the last write) still records the range.
        for at in range(0, max(len(chunks), 1), size):
            batch = chunks[at : at + size]
            if batch:
                keyword = await self.writer.keyword_vectors(batch)
                await self._upsert(record, await self.writer.add_dense(keyword))
            done = resume - first + min(at + size, len(chunks))
            updated = await self._record_dense(record, key, done, total)
            if updated.data.status == "failed":
                log.info("dense_range_stopped_file_failed", file_id=record.id, first=first)
                return
            if updated.data.status == "completed":
                await self._complete(record, total, reused=False)
                return

    async def _record_dense(
        self, record: FileRecord, key: str, done: int, total: int
    ) -> FileRecord:
        """Progress of one range; the write that brings every range to its end completes."""

        def change(data: FileData) -> FileData:
            if data.status in FINISHED:
                return data
            ranges = {**data.dense_ranges, key: max(done, data.dense_ranges.get(key, 0))}
            embedded = sum(ranges.values())
            if embedded >= total:
                return _completed(data, total)
            return msgspec.structs.replace(
                data,
                status="processing",
                stage="embedding",
                chunks_done=embedded,
                chunks_total=total,
                keyword_searchable=True,
                dense_ranges=ranges,
            )

        return await self._update(record.id, _guarded(record.data.run, change))

    async def _advance(self, record: FileRecord, stage: Stage, **fields: object) -> None:
        """Enter `stage` (a boundary): raises `Cancelled` or `StaleJob` instead when due."""

        def change(data: FileData) -> FileData:
            if data.status in FINISHED:
                raise StaleJob(record.id)  # finished meanwhile by another job of this run
            return msgspec.structs.replace(data, status="processing", stage=stage, **fields)

        await self._update(record.id, _guarded(record.data.run, change))

    async def _complete(self, record: FileRecord, total: int, *, reused: bool) -> None:
        if reused:
            await self._update(
                record.id, _guarded(record.data.run, lambda data: _completed(data, total))
            )
        await self.catalog.blobs.delete(chunks_name(record.id))  # no range needs them now
        if not record.meta.edited:  # an edited file's vectors no longer match its bytes
            await self.catalog.remember_hash(record.hash, record.id)
        self.files["completed"] += 1
        log.info(
            "file_ingested",
            file_id=record.id,
            chunks=total,
            reused_vectors=reused,
            seconds_since_upload=round(time.time() - record.created_at, 1),
        )

    async def _upsert(self, record: FileRecord, vectors: Sequence[ChunkVector]) -> None:
        if not vectors:
            return
        try:
            await self.writer.upsert(record.id, record.user_id, record.filename, list(vectors))
        except RagwayError as exc:
            if exc.code == "not_found":
                await self._ensure_exists(record.id)
            raise

    async def fail(self, job: IngestJob, reason: str) -> bool:
        """Mark the file failed (unless it finished meanwhile, or a newer run of it
        started); False when it is gone."""

        def change(data: FileData) -> FileData:
            if data.status == "completed" or data.run != job.run:
                return data
            return FileData(
                status="failed", error=reason, chunks_total=data.chunks_total, run=data.run
            )

        try:
            await self._update(job.file_id, change)
        except FileGone:
            return False
        self.files["failed"] += 1
        log.info("file_failed", file_id=job.file_id, reason=reason)
        return True

    async def stop_cancelled(self, job: IngestJob, reason: str) -> None:
        """After a `Cancelled` boundary: delete what the job wrote, then mark the file
        cancelled (`failed` at stage `cancelled`, the reason as its error)."""
        record = await self.catalog.get(job.file_id)
        if record is None or record.data.run != job.run:
            return  # deleted, or a retry owns the file now (it deleted the vectors itself)
        removed = await self.writer.delete(record.id)
        await self.catalog.blobs.delete(chunks_name(record.id))
        if not record.meta.edited:  # an edited file's text is its content: kept
            await self.catalog.blobs.delete(text_name(record.id))

        def change(data: FileData) -> FileData:
            if data.run != job.run or data.status == "completed" or data.stage == "cancelled":
                return data
            return FileData(
                status="failed",
                stage="cancelled",
                error=data.cancel_reason or reason,
                chunks_total=data.chunks_total,
                run=data.run,
            )

        try:
            await self._update(record.id, change)
        except FileGone:
            return
        log.info("file_cancelled", file_id=record.id, vectors_deleted=removed, reason=reason)

    async def _extracted(self, record: FileRecord) -> ProcessedFile:
        """The chunks the file job stored for its ranges (extracting again if they are gone)."""
        try:
            stored = await self.catalog.blobs.get_bytes(chunks_name(record.id))
        except RagwayError as exc:
            if exc.code != "not_found":
                raise
            log.info("stored_chunks_missing", file_id=record.id)
            return await self._extract(record)
        return _decode_processed(stored)

    async def _extract(
        self, record: FileRecord, on_extracted: Callable[[], Awaitable[None]] | None = None
    ) -> ProcessedFile:
        if record.meta.edited:
            return await self._edited_text(record, on_extracted)
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
        self.extractions += 1
        try:
            return await process_file_in_child(
                blob,
                record.filename or record.meta.name,
                record.meta.content_type,
                limits=self._limits,
                chunking=self._chunking,
                child=self._child,
                on_extracted=on_extracted,
            )
        except ExtractionError as exc:
            raise JobFailed(exc.reason) from None

    async def _edited_text(
        self, record: FileRecord, on_extracted: Callable[[], Awaitable[None]] | None
    ) -> ProcessedFile:
        """The text that replaced the extracted one, chunked as Markdown (plain text is)."""
        try:
            text = await self.catalog.blobs.get_bytes(text_name(record.id), self._max_file_bytes)
        except RagwayError as exc:
            if exc.code == "not_found":
                await self._ensure_exists(record.id)
                raise JobFailed("The file's edited text is missing; save it again") from None
            raise
        try:
            return await process_file_in_child(
                text,
                EDITED_NAME,
                "text/markdown",
                limits=self._limits,
                chunking=self._chunking,
                child=self._child,
                on_extracted=on_extracted,
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

    async def _ensure_exists(self, file_id: str) -> None:
        if await self.catalog.get(file_id) is None:
            raise FileGone(file_id)

    async def _update(self, file_id: str, change: Callable[[FileData], FileData]) -> FileRecord:
        def apply(record: FileRecord) -> FileRecord:
            record.data = change(record.data)
            return record

        try:
            return await self.catalog.update(file_id, apply)
        except RagwayError as exc:
            if exc.code == "not_found":
                raise FileGone(file_id) from None
            raise


def _completed(data: FileData, total: int) -> FileData:
    return FileData(
        status="completed",
        chunks_done=total,
        chunks_total=total,
        keyword_searchable=True,
        run=data.run,
    )


def _guarded(run: int, change: Callable[[FileData], FileData]) -> Callable[[FileData], FileData]:
    """`change`, unless the file moved to another run (`StaleJob`) or a cancel waits
    (`Cancelled`, also when another job of this run already stopped it)."""

    def apply(data: FileData) -> FileData:
        if data.run != run:
            raise StaleJob()
        if data.stage == "cancelled" and data.status == "failed":
            raise Cancelled(data.error or "Processing was cancelled")
        if data.cancel_reason is not None:
            raise Cancelled(data.cancel_reason)
        return change(data)

    return apply


def chunk_ranges(total: int, size: int) -> list[tuple[int, int]]:
    """[first, stop) ranges of at most `size` chunks covering `total` chunks."""
    return [(first, min(first + size, total)) for first in range(0, total, size)]
