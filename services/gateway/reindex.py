"""Processing a file again: after its text was edited, or to re-index it in place.

The order keeps every search free of stale chunks: the record goes back to `pending`
first (searches then wait for it, as for any new file), then its vectors are deleted,
then the job is queued. Only a settled file (completed or failed) is re-processed, and
the record starts a new run: a job of an earlier run (a range job still in flight when
its file failed or was cancelled) finds a run that is not its own and leaves the file
alone. A retried file's dead letter goes just before its job is queued.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from catalog.files import text_name
from common.errors import RagwayError
from contracts import subjects
from contracts.files import FileData, FileRecord, IngestJob
from contracts.retrieval import FileVectorsRef
from gateway.ingest_queue import publish_job
from gateway.state import BUS, CATALOG, DEAD_LETTERS, REQUEST_ID, SETTINGS

SETTLED = ("completed", "failed")


async def reprocess(
    request: web.Request, record: FileRecord, text: str | None = None
) -> FileRecord:
    """Queue `record` for processing again; with `text`, that text replaces the extracted.
    Returns the record as queued (`pending`, its new run)."""
    app = request.app
    catalog = app[CATALOG]
    if record.data.status not in SETTLED:
        raise RagwayError(
            "conflict",
            f"File {record.meta.name!r} is still {record.data.status}; try again once it is done",
        )
    if text is not None:
        await catalog.blobs.put_bytes(text_name(record.id), text.encode())
        # an edited file no longer matches its bytes: no upload may reuse its vectors
        await catalog.forget_hash(record.hash, record.id)

    def pending(current: FileRecord) -> FileRecord:
        if current.data.status not in SETTLED:
            raise RagwayError("conflict", f"File {current.meta.name!r} is being processed")
        current.data = FileData(status="pending", run=current.data.run + 1)
        if text is not None:
            current.meta.edited = True
        return current

    queued = await catalog.update(record.id, pending)
    settings = app[SETTINGS]
    await app[BUS].call(
        subjects.VECTORS_DELETE,
        FileVectorsRef(file_id=record.id),
        timeout=settings.request_timeout_seconds,
    )
    # before the job: a worker that fails it again at once writes the file's new letter
    await app[DEAD_LETTERS].remove(record.id)
    await publish_job(
        app[BUS].nc.jetstream(timeout=settings.request_timeout_seconds),
        settings.ingest_subject,
        IngestJob(file_id=record.id, request_id=request.get(REQUEST_ID, ""), run=queued.data.run),
    )
    return queued


async def settled(request: web.Request, file_id: str, seconds: float) -> FileRecord | None:
    """The record once completed or failed, or as it is after `seconds` (None: deleted)."""
    catalog = request.app[CATALOG]
    latest = await catalog.get(file_id)
    updates = catalog.watch(file_id)
    try:
        async with asyncio.timeout(seconds):
            async for record in updates:
                latest = record
                if record is None or record.data.status in SETTLED:
                    break
    except TimeoutError:
        latest = await catalog.get(file_id)
    finally:
        with contextlib.suppress(Exception):
            await updates.aclose()  # type: ignore[attr-defined]
    return latest
