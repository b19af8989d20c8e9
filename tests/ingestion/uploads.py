"""Stand-ins for the gateway's upload route: a record, a blob, a job on the queue."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable

from msgspec import json
from nats.aio.client import Client

from catalog.files import FileCatalog, blob_name, now
from catalog.jobs import ensure_stream
from contracts.files import FileData, FileMeta, FileRecord, FileStatus, IngestJob
from ingestion.app import Settings

WAIT_SECONDS = 60.0


async def upload(
    nc: Client,
    catalog: FileCatalog,
    settings: Settings,
    content: bytes,
    name: str = "notes.md",
    content_type: str = "text/markdown",
    owner: str = "",
    queue: bool = True,
) -> FileRecord:
    """Store `content` as a new pending file and (unless told not to) queue its job."""
    stamp = now()
    record = FileRecord(
        id=str(uuid.uuid4()),
        user_id=owner or f"u-{uuid.uuid4().hex[:8]}",
        hash=hashlib.sha256(content).hexdigest(),
        filename=name,
        data=FileData(status="pending"),
        meta=FileMeta(name=name, content_type=content_type, size=len(content)),
        created_at=stamp,
        updated_at=stamp,
    )
    await catalog.blobs.put_bytes(blob_name(record.id), content)
    await catalog.create(record)
    if queue:
        await queue_job(nc, settings, record.id)
    return record


async def queue_job(nc: Client, settings: Settings, file_id: str) -> None:
    js = nc.jetstream()
    await ensure_stream(js, settings.ingest_stream, settings.ingest_subject, 1)
    job = IngestJob(file_id=file_id, request_id=uuid.uuid4().hex)
    await js.publish(settings.ingest_subject, json.encode(job))


async def record_when(
    catalog: FileCatalog, file_id: str, ready: Callable[[FileRecord], bool]
) -> FileRecord:
    """Poll the record until `ready(record)` (within WAIT_SECONDS)."""
    async with asyncio.timeout(WAIT_SECONDS):
        while True:
            record = await catalog.require(file_id)
            if ready(record):
                return record
            await asyncio.sleep(0.02)


async def wait_for(
    catalog: FileCatalog, file_id: str, statuses: tuple[FileStatus, ...]
) -> FileRecord:
    """Poll the record until its status is one of `statuses`."""
    return await record_when(catalog, file_id, lambda record: record.data.status in statuses)
