"""Text in, text changed, text indexed again: `retrieval/process/text`,
`files/{id}/data/content/update` and `knowledge/{id}/file/update`.

Each answers once the file is processed (or as it is after `process_wait_seconds`), as
Open WebUI does, and re-processing goes through `reindex.reprocess`, which leaves no stale
chunk of the old text in any search.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Any

import msgspec
import structlog
from aiohttp import web

from catalog.files import blob_name
from common.errors import RagwayError, invalid, not_found
from contracts.knowledge import FileIdForm
from gateway import scopes
from gateway.bodies import json_value, parse, read_body
from gateway.knowledge_links import knowledge_of, writable_knowledge
from gateway.reindex import reprocess, settled
from gateway.routes_files import (
    Stored,
    file_object,
    new_record,
    queue_new_file,
    readable_record,
    reserve_storage,
    sized_metadata,
)
from gateway.state import CATALOG, SETTINGS, Access, Route, add_route_table, principal_of
from gateway.uploads import safe_filename

log = structlog.get_logger()

MIB = 1024 * 1024
TEXT_TYPE = "text/markdown"


class ContentForm(msgspec.Struct, kw_only=True):
    """Body of `files/{id}/data/content/update`."""

    content: str


class ProcessTextForm(msgspec.Struct, kw_only=True):
    """Body of `retrieval/process/text` (Open WebUI's ProcessTextForm)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    content: str
    collection_name: str | None = None
    # ragway's: the file's metadata, as an upload's `metadata` field (filters test it)
    metadata: dict[str, Any] | None = None


class ContentReply(msgspec.Struct, kw_only=True):
    """Open WebUI's `{content}`, with where processing got to."""

    content: str
    status: str
    error: str | None = None


class ProcessTextReply(msgspec.Struct, kw_only=True):
    """Open WebUI's `{status, collection_name, content}`, with the file made of the text."""

    status: bool
    collection_name: str
    content: str
    file_id: str
    file: dict[str, object]


def _checked_text(request: web.Request, content: str) -> bytes:
    if not content.strip():
        raise invalid("The content is empty")
    data = content.encode()
    limit_mb = request.app[SETTINGS].file_max_size_mb
    if len(data) > limit_mb * MIB:
        raise RagwayError("too_large", f"The content is larger than the {limit_mb} MB limit")
    return data


async def update_content(request: web.Request) -> web.Response:
    """Replace a file's extracted text and index it again; old chunks are gone first."""
    form = parse(await read_body(request), ContentForm)
    _checked_text(request, form.content)
    record = await readable_record(request)
    await reprocess(request, record, form.content)
    log.info("file_text_replaced", file_id=record.id, characters=len(form.content))
    done = await settled(request, record.id, request.app[SETTINGS].process_wait_seconds)
    if done is None:
        raise not_found("File not found")
    return json_value(
        ContentReply(content=form.content, status=done.data.status, error=done.data.error)
    )


async def process_text(request: web.Request) -> web.Response:
    """Text becomes a file (same pipeline and status), linked to `collection_name` if named."""
    form = parse(await read_body(request), ProcessTextForm)
    data = _checked_text(request, form.content)
    name = safe_filename(form.name)
    if "." not in name:
        name += ".md"
    if form.collection_name is not None:
        scopes.require_collection(principal_of(request), form.collection_name)
        await writable_knowledge(request, form.collection_name)
    catalog, file_id = request.app[CATALOG], str(uuid.uuid4())
    reserved = await reserve_storage(request, len(data))
    stored = Stored(
        name=name, content_type=TEXT_TYPE, size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    metadata = {**sized_metadata(form.metadata or {}), "source": "process/text"}
    record = new_record(file_id, principal_of(request), stored, metadata)
    try:
        await catalog.blobs.put_bytes(blob_name(file_id), data)
        await catalog.create(record)
    except BaseException:
        await catalog.blobs.delete(blob_name(file_id))
        if reserved:
            await catalog.usage.release(record.user_id, len(data))
        raise
    await queue_new_file(request, record, form.collection_name)
    done = await settled(request, file_id, request.app[SETTINGS].process_wait_seconds) or record
    if done.data.status == "failed":
        raise invalid(f"The text could not be processed: {done.data.error or 'unknown error'}")
    return json_value(
        ProcessTextReply(
            status=True,
            collection_name=form.collection_name or f"file-{file_id}",
            content=form.content,
            file_id=file_id,
            file=file_object(done),
        )
    )


async def update_knowledge_file(request: web.Request) -> web.Response:
    """Index one of a collection's files again (Open WebUI's `file/update`)."""
    form = parse(await read_body(request), FileIdForm)
    knowledge_id = request.match_info["knowledge_id"]
    scopes.require_collection(principal_of(request), knowledge_id)
    knowledge = await writable_knowledge(request, knowledge_id)
    if form.file_id not in knowledge.data.file_ids:
        raise not_found(f"File {form.file_id} is not in this knowledge base")
    record = await request.app[CATALOG].get(form.file_id)
    if record is None:
        raise not_found(f"File {form.file_id} not found")
    await reprocess(request, record)
    await settled(request, record.id, request.app[SETTINGS].process_wait_seconds)
    return json_value(await knowledge_of(request, knowledge_id))


def add_routes(app: web.Application, access: dict[str, Access]) -> None:
    table: list[Route] = [
        ("POST", "/api/v1/retrieval/process/text", "retrieval_process_text", process_text),
        (
            "POST",
            "/api/v1/files/{file_id}/data/content/update",
            "files_text_update",
            update_content,
        ),
        (
            "POST",
            "/api/v1/knowledge/{knowledge_id}/file/update",
            "knowledge_file_update",
            update_knowledge_file,
        ),
    ]
    add_route_table(app, access, table, "user")
