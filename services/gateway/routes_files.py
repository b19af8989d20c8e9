"""Open WebUI's file routes: streamed uploads into the object store, records in KV.

Uploads never sit in memory whole: the multipart part is read in chunks straight into
the JetStream object store (which hashes as it goes), then the record is created and an
ingestion job queued; the reply comes at once. Reading a file is for its owner and
admins; anyone else gets 404. Deleting goes through the retrieval service, which owns
what hangs off a file (vectors, knowledge links) besides its record and blobs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import msgspec
import structlog
from aiohttp import BodyPartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from catalog.files import FileCatalog, blob_name, now, over_quota, text_name
from catalog.metadata_match import matches
from common.codec import decode, encode
from common.errors import RagwayError, invalid, not_found
from contracts import subjects
from contracts.auth import Principal
from contracts.files import (
    DeleteFileRequest,
    FileData,
    FileMeta,
    FileRecord,
    FileStatusReply,
    IngestJob,
    stage_of,
)
from gateway.bodies import TRUE, json_bytes, json_value
from gateway.ingest_queue import publish_job
from gateway.knowledge_links import link_to_knowledge, writable_knowledge_of
from gateway.paging import Paged, filter_of, page_of
from gateway.reindex import settled
from gateway.state import (
    BUS,
    CATALOG,
    REQUEST_ID,
    SETTINGS,
    Access,
    Route,
    add_route_table,
    principal_of,
)
from gateway.uploads import (
    content_type_for,
    refuse_unsupported,
    refuse_unsupported_bytes,
    safe_filename,
)

log = structlog.get_logger()

MIB = 1024 * 1024
READ_CHUNK = 64 * 1024
# every chunk's payload carries a copy of it (metadata filters test it in the search)
MAX_METADATA_BYTES = 8 * 1024
# Multipart framing and small fields around the file itself.
MULTIPART_OVERHEAD = 1 * MIB
MAX_TEXT_BYTES = 64 * MIB
TERMINAL = ("completed", "failed")
FILES_PAGE_SIZE = 50  # Open WebUI's files router
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class Stored(msgspec.Struct, kw_only=True):
    name: str
    content_type: str
    size: int
    sha256: str


def file_object(record: FileRecord) -> dict[str, Any]:
    """The record as clients see it (Open WebUI's file object), without the workers'
    per-range bookkeeping (`chunks_done` sums it)."""
    value: dict[str, Any] = msgspec.to_builtins(record)
    for bookkeeping in ("dense_ranges", "cancel_reason", "run"):
        value["data"].pop(bookkeeping, None)
    return value


def can_read(principal: Principal, record: FileRecord) -> bool:
    return record.user_id == principal.id or principal.role == "admin"


async def readable_record(request: web.Request) -> FileRecord:
    """The file named in the path, if the caller may read it; 404 otherwise."""
    file_id = request.match_info["file_id"]
    record = await request.app[CATALOG].get(file_id)
    if record is None or not can_read(principal_of(request), record):
        raise not_found("File not found")
    return record


# --- upload ------------------------------------------------------------------------------


async def upload_file(request: web.Request) -> web.Response:
    settings, catalog = request.app[SETTINGS], request.app[CATALOG]
    max_size = settings.file_max_size_mb * MIB
    in_background = _in_background(request)
    if not request.content_type.startswith("multipart/"):
        raise invalid("Send the file as multipart/form-data in the field 'file'")
    declared = request.content_length
    if declared is not None and declared > max_size + MULTIPART_OVERHEAD:
        raise _too_large(settings.file_max_size_mb)
    file_id = str(uuid.uuid4())
    user_id = principal_of(request).id
    quota = settings.storage_quota_mb * MIB
    used = await catalog.usage.used(user_id) if quota else 0
    if quota and used >= quota:
        raise over_quota(quota, used)
    # the stream stops at whichever comes first: the upload limit or the room left
    room = min(max_size, quota - used) if quota else max_size
    stored: Stored | None = None
    reserved = False
    metadata: dict[str, Any] = {}
    try:
        async for part in _parts(request):
            if part.name == "file" and stored is None:
                stored = await _store_part(catalog, part, file_id, room)
            elif part.name == "metadata":
                metadata = _parse_metadata(await _read_small(part, MAX_METADATA_BYTES))
            else:
                await part.release()
        if stored is None:
            raise invalid("A file is required in the multipart field 'file'")
        knowledge_id = await writable_knowledge_of(request, metadata)
        if quota:  # uploads racing on other gateways: the shared count decides
            await catalog.usage.reserve(user_id, stored.size, quota)
            reserved = True
        record = new_record(file_id, principal_of(request), stored, metadata)
        await catalog.create(record)
    except BaseException as exc:
        if stored is not None:
            await asyncio.shield(catalog.blobs.delete(blob_name(file_id)))
        if reserved and stored is not None:
            await asyncio.shield(catalog.usage.release(user_id, stored.size))
        if isinstance(exc, RagwayError) and exc.code == "too_large":
            if room < max_size:
                raise over_quota(quota, used) from None
            raise _too_large(settings.file_max_size_mb) from None
        raise
    await queue_new_file(request, record, knowledge_id)
    log.info("file_uploaded", file_id=file_id, size=stored.size, content_type=stored.content_type)
    if in_background:
        return json_value(file_object(record))
    done = await settled(request, file_id, settings.process_wait_seconds)
    return json_value(file_object(done or record))


async def reserve_storage(request: web.Request, size: int) -> bool:
    """Count `size` more bytes against the caller's quota; False when there is no quota.

    Raises `over_quota` (507) counting nothing when they do not fit.
    """
    app = request.app
    quota = app[SETTINGS].storage_quota_mb * MIB
    if quota:
        await app[CATALOG].usage.reserve(principal_of(request).id, size, quota)
    return bool(quota)


def _in_background(request: web.Request) -> bool:
    """Open WebUI's `?process_in_background=` (true by default)."""
    raw = request.query.get("process_in_background", "true").lower()
    if raw not in ("true", "false", "1", "0"):
        raise invalid("`process_in_background` must be true or false")
    return raw in ("true", "1")


async def queue_new_file(
    request: web.Request, record: FileRecord, knowledge_id: str | None = None
) -> None:
    """Queue a created file's ingestion job (the record goes when that fails), then link
    it to `knowledge_id` (it joins that collection's search once searchable)."""
    app = request.app
    try:
        await publish_job(
            app[BUS].nc.jetstream(timeout=app[SETTINGS].request_timeout_seconds),
            app[SETTINGS].ingest_subject,
            IngestJob(file_id=record.id, request_id=request.get(REQUEST_ID, "")),
        )
    except RagwayError:
        await app[CATALOG].delete(record.id)
        raise
    if knowledge_id is not None:
        await link_to_knowledge(request, knowledge_id, record.id)


async def _parts(request: web.Request) -> AsyncIterator[BodyPartReader]:
    """The form's parts; a body that is not well-formed multipart is `invalid`."""
    try:
        reader = await request.multipart()
    except ValueError:  # no boundary in the Content-Type
        raise invalid("Malformed multipart body: the Content-Type has no boundary") from None
    while True:
        try:
            part = await reader.next()
        except (HttpProcessingError, ValueError):
            raise invalid("Malformed multipart body") from None
        if part is None:
            return
        if not isinstance(part, BodyPartReader):
            raise invalid("Nested multipart bodies are not supported")
        yield part


def _too_large(limit_mb: int) -> RagwayError:
    return RagwayError("too_large", f"The file is larger than the {limit_mb} MB upload limit")


async def _store_part(
    catalog: FileCatalog, part: BodyPartReader, file_id: str, max_size: int
) -> Stored:
    name = safe_filename(part.filename)
    content_type = content_type_for(name, part.headers.get(hdrs.CONTENT_TYPE))
    refuse_unsupported(name, content_type)

    async def chunks() -> AsyncIterator[bytes]:
        first = True
        while piece := await part.read_chunk(READ_CHUNK):
            if first:
                refuse_unsupported_bytes(name, piece)
                first = False
            yield piece

    info = await catalog.blobs.put_stream(blob_name(file_id), chunks(), max_size=max_size)
    return Stored(name=name, content_type=content_type, size=info.size, sha256=info.sha256)


async def _read_small(part: BodyPartReader, limit: int) -> bytes:
    data = bytearray()
    while piece := await part.read_chunk(READ_CHUNK):
        data += piece
        if len(data) > limit:
            raise invalid(f"The 'metadata' field is larger than {limit // 1024} KiB")
    return bytes(data)


def _parse_metadata(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = decode(raw, object)
    except msgspec.DecodeError:
        raise invalid("The 'metadata' field must be a JSON object") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid("The 'metadata' field must be a JSON object")
    return value


def sized_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata sent inside a JSON body, held to the form field's bound."""
    if len(msgspec.json.encode(metadata)) > MAX_METADATA_BYTES:
        raise invalid(f"The 'metadata' field is larger than {MAX_METADATA_BYTES // 1024} KiB")
    return metadata


def new_record(
    file_id: str, principal: Principal, stored: Stored, metadata: dict[str, Any]
) -> FileRecord:
    stamp = now()
    return FileRecord(
        id=file_id,
        user_id=principal.id,
        hash=stored.sha256,
        filename=stored.name,
        data=FileData(status="pending"),
        meta=FileMeta(
            name=stored.name, content_type=stored.content_type, size=stored.size, data=metadata
        ),
        created_at=stamp,
        updated_at=stamp,
    )


# --- reading -----------------------------------------------------------------------------


async def list_files(request: web.Request) -> web.StreamResponse:
    """The caller's files, newest first: all of them, or `{items, total}` with `?page=`;
    `?filter=` keeps those whose upload metadata passes it."""
    catalog, user_id = request.app[CATALOG], principal_of(request).id
    page = page_of(request)
    on_metadata = filter_of(request)
    if on_metadata is not None:
        kept = [r for r in await catalog.list_for(user_id) if matches(on_metadata, r.meta.data)]
        if page is None:
            return json_value([file_object(record) for record in kept])
        first = (page - 1) * FILES_PAGE_SIZE
        return json_value(
            Paged(
                items=[file_object(r) for r in kept[first : first + FILES_PAGE_SIZE]],
                total=len(kept),
            )
        )
    if page is None:
        return await _all_files(request, catalog.chunks_for(user_id))
    records, total = await catalog.page_for(user_id, (page - 1) * FILES_PAGE_SIZE, FILES_PAGE_SIZE)
    return json_value(Paged(items=[file_object(r) for r in records], total=total))


async def _all_files(
    request: web.Request, chunks: AsyncIterator[list[FileRecord]]
) -> web.StreamResponse:
    """The bare list (0.6 clients), written a chunk of records at a time: 10,000 files
    are never held encoded at once, and the first bytes leave after the first chunk. A
    failure before the first chunk is still a plain JSON error."""
    first: list[FileRecord] = await anext(chunks, [])
    response = web.StreamResponse(headers={"Cache-Control": "no-store"})
    response.content_type = "application/json"
    await response.prepare(request)
    await response.write(b"[" + encode([file_object(r) for r in first])[1:-1])
    written = bool(first)
    async for chunk in chunks:
        if chunk:
            body = encode([file_object(r) for r in chunk])[1:-1]
            await response.write(b"," + body if written else body)
            written = True
    await response.write(b"]")
    await response.write_eof()
    return response


async def get_file(request: web.Request) -> web.Response:
    return json_value(file_object(await readable_record(request)))


def status_of(record: FileRecord) -> FileStatusReply:
    data = record.data
    return FileStatusReply(
        status=data.status,
        stage=stage_of(data),
        error=data.error,
        chunks_done=data.chunks_done,
        chunks_total=data.chunks_total,
        keyword_searchable=data.keyword_searchable,
        cancel_requested=data.cancel_reason is not None and data.status == "processing",
    )


async def file_status(request: web.Request) -> web.StreamResponse:
    record = await readable_record(request)
    if request.query.get("stream", "").lower() not in ("1", "true", "yes"):
        return json_value(status_of(record))
    return await _status_stream(request, record)


async def _status_stream(request: web.Request, record: FileRecord) -> web.StreamResponse:
    """SSE: the status now and after every change, until completed/failed (or the bound)."""
    settings, catalog = request.app[SETTINGS], request.app[CATALOG]
    response = web.StreamResponse(headers=SSE_HEADERS)
    response.content_type = "text/event-stream"
    await response.prepare(request)
    last: FileStatusReply | None = None
    updates = catalog.watch(record.id)
    try:
        async with asyncio.timeout(settings.file_status_stream_max_seconds):
            async for latest in updates:
                if latest is None:
                    gone = FileStatusReply(
                        status="failed", stage="failed", error="The file was deleted"
                    )
                    await response.write(_event(gone))
                    break
                reply = status_of(latest)
                if reply != last:
                    await response.write(_event(reply))
                    last = reply
                if reply.status in TERMINAL:
                    break
    except TimeoutError:
        log.info("file_status_stream_bound_reached", file_id=record.id)
    finally:
        await updates.aclose()  # type: ignore[attr-defined]
    await response.write_eof()
    return response


def _event(reply: FileStatusReply) -> bytes:
    return b"data: " + encode(reply) + b"\n\n"


async def file_content(request: web.Request) -> web.StreamResponse:
    """The original bytes, streamed from the object store, as a download."""
    record = await readable_record(request)
    chunks = request.app[CATALOG].blobs.get_stream(blob_name(record.id))
    try:
        first = await anext(chunks, b"")  # a missing blob is a JSON 404, before any header
        response = web.StreamResponse(
            headers={
                hdrs.CONTENT_DISPOSITION: content_disposition(record.meta.name),
                "X-Content-Type-Options": "nosniff",
            }
        )
        response.content_type = (
            record.meta.content_type.split(";", 1)[0] or "application/octet-stream"
        )
        response.content_length = record.meta.size
        await response.prepare(request)
        if first:
            await response.write(first)
        async for piece in chunks:
            await response.write(piece)
        await response.write_eof()
        return response
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback name and the exact one per RFC 6266/5987."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in name
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


async def file_text(request: web.Request) -> web.Response:
    """`{content}`: the text the ingestion workers extracted."""
    record = await readable_record(request)
    try:
        raw = await request.app[CATALOG].blobs.get_bytes(text_name(record.id), MAX_TEXT_BYTES)
    except RagwayError as exc:
        if exc.code != "not_found":
            raise
        status = record.data.status
        if status == "failed":
            why = record.data.error or "it could not be processed"
            raise not_found(f"File {record.meta.name!r} has no text: {why}") from None
        if status != "completed":
            raise not_found(
                f"File {record.meta.name!r} is still {status}: its text is not extracted yet"
            ) from None
        raise not_found(f"File {record.meta.name!r} has no extracted text") from None
    return json_bytes(b'{"content":' + encode(raw.decode("utf-8", errors="replace")) + b"}")


# --- deleting ----------------------------------------------------------------------------


async def delete_file(request: web.Request) -> web.Response:
    app = request.app
    await app[BUS].call(
        subjects.FILES_DELETE,
        DeleteFileRequest(principal=principal_of(request), file_id=request.match_info["file_id"]),
        timeout=app[SETTINGS].request_timeout_seconds,
    )
    return json_bytes(TRUE)


def add_routes(app: web.Application, access: dict[str, Access]) -> None:
    table: list[Route] = [
        ("POST", "/api/v1/files/", "files_upload", upload_file),
        ("POST", "/api/v1/files", "files_upload_bare", upload_file),
        ("GET", "/api/v1/files/", "files_list", list_files),
        ("GET", "/api/v1/files", "files_list_bare", list_files),
        ("GET", "/api/v1/files/{file_id}", "files_get", get_file),
        ("GET", "/api/v1/files/{file_id}/process/status", "files_status", file_status),
        ("GET", "/api/v1/files/{file_id}/content", "files_content", file_content),
        ("GET", "/api/v1/files/{file_id}/data/content", "files_text", file_text),
        ("DELETE", "/api/v1/files/{file_id}", "files_delete", delete_file),
    ]
    add_route_table(app, access, table, "user")
