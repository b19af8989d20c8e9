"""Open WebUI's knowledge routes, answered by the retrieval service over NATS.

The retrieval service checks every access (`access_grants`, see `common.access`); bodies
are validated here, replies go out as the service sent them.
"""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web

from common.codec import encode
from contracts import subjects
from contracts.endpoint import Endpoint
from contracts.knowledge import (
    AccessForm,
    FileIdForm,
    KnowledgeAccessUpdate,
    KnowledgeCreate,
    KnowledgeFileChange,
    KnowledgeFilesBatch,
    KnowledgeFilesQuery,
    KnowledgeForm,
    KnowledgeList,
    KnowledgeListRequest,
    KnowledgeRef,
    KnowledgeUpdate,
    SyncCleanupForm,
    SyncCleanupRequest,
    SyncDiffForm,
    SyncDiffRequest,
)
from gateway import scopes
from gateway.bodies import TRUE, json_bytes, json_value, parse, read_body
from gateway.paging import Paged, filter_of, page_of, text_of
from gateway.state import BUS, SETTINGS, Access, Route, add_route_table, principal_of

Req = TypeVar("Req")
KNOWLEDGE_PAGE_SIZE = 30  # Open WebUI's knowledge router (PAGE_ITEM_COUNT)
FILES_PAGE_SIZE = 30


async def _call(request: web.Request, endpoint: Endpoint[Req, Any], message: Req) -> bytes:
    """The retrieval service's reply bytes, relayed as they came."""
    app = request.app
    return await app[BUS].call_raw(
        endpoint, encode(message), timeout=app[SETTINGS].request_timeout_seconds
    )


def _knowledge_id(request: web.Request) -> str:
    """The path's collection id, once a scoped key was found allowed to use it."""
    knowledge_id = request.match_info["knowledge_id"]
    scopes.require_collection(principal_of(request), knowledge_id)
    return knowledge_id


def _ref(request: web.Request) -> KnowledgeRef:
    return KnowledgeRef(principal=principal_of(request), knowledge_id=_knowledge_id(request))


async def create(request: web.Request) -> web.Response:
    scopes.require_unscoped_collections(principal_of(request), "create collections")
    form = parse(await read_body(request), KnowledgeForm)
    message = KnowledgeCreate(principal=principal_of(request), form=form)
    return json_bytes(await _call(request, subjects.KNOWLEDGE_CREATE, message))


async def list_knowledge(request: web.Request) -> web.Response:
    """Readable collections: a bare list, or `{items, total}` with `?page=` (30 a page)."""
    page = page_of(request)
    message = KnowledgeListRequest(
        principal=principal_of(request),
        skip=0 if page is None else (page - 1) * KNOWLEDGE_PAGE_SIZE,
        limit=None if page is None else KNOWLEDGE_PAGE_SIZE,
    )
    listed = await _list(request, message)
    if page is None:
        return json_value(listed.items)
    return json_value(Paged(items=listed.items, total=listed.total))


async def list_writable(request: web.Request) -> web.Response:
    """`/knowledge/list` (0.6 clients): the collections the caller may add files to."""
    message = KnowledgeListRequest(principal=principal_of(request), permission="write")
    return json_value((await _list(request, message)).items)


async def _list(request: web.Request, message: KnowledgeListRequest) -> KnowledgeList:
    """The service's listing; for a collection-scoped key only its collections (a page
    of them then counts only what it shows)."""
    listed = await request.app[BUS].call(
        subjects.KNOWLEDGE_LIST, message, timeout=request.app[SETTINGS].request_timeout_seconds
    )
    shown = scopes.visible(message.principal, (item.id for item in listed.items))
    if shown is None:
        return listed
    items = [item for item in listed.items if item.id in shown]
    return KnowledgeList(items=items, total=len(items))


async def list_files(request: web.Request) -> web.Response:
    """`{items, total}`: a page (`?page=`, 30 each) of the files, `?query=` on their names,
    `?filter=` on their upload metadata."""
    page = page_of(request) or 1
    message = KnowledgeFilesQuery(
        principal=principal_of(request),
        knowledge_id=_knowledge_id(request),
        query=text_of(request, "query"),
        filter=filter_of(request),
        skip=(page - 1) * FILES_PAGE_SIZE,
        limit=FILES_PAGE_SIZE,
    )
    return json_bytes(await _call(request, subjects.KNOWLEDGE_FILES, message))


async def batch_add(request: web.Request) -> web.Response:
    """`[{file_id}, ...]`: every file added or not on its own (`results`, `warnings`)."""
    forms = parse(await read_body(request), list[FileIdForm])
    message = KnowledgeFilesBatch(
        principal=principal_of(request),
        knowledge_id=_knowledge_id(request),
        file_ids=[form.file_id for form in forms],
    )
    return json_bytes(await _call(request, subjects.KNOWLEDGE_FILES_BATCH, message))


async def sync_diff(request: web.Request) -> web.Response:
    form = parse(await read_body(request), SyncDiffForm)
    message = SyncDiffRequest(
        principal=principal_of(request),
        knowledge_id=_knowledge_id(request),
        manifest=form.manifest,
    )
    return json_bytes(await _call(request, subjects.KNOWLEDGE_SYNC_DIFF, message))


async def sync_cleanup(request: web.Request) -> web.Response:
    form = parse(await read_body(request), SyncCleanupForm)
    message = SyncCleanupRequest(
        principal=principal_of(request),
        knowledge_id=_knowledge_id(request),
        file_ids=form.file_ids,
    )
    return json_bytes(await _call(request, subjects.KNOWLEDGE_SYNC_CLEANUP, message))


async def get(request: web.Request) -> web.Response:
    return json_bytes(await _call(request, subjects.KNOWLEDGE_GET, _ref(request)))


async def update(request: web.Request) -> web.Response:
    knowledge_id = _knowledge_id(request)
    form = parse(await read_body(request), KnowledgeForm)
    message = KnowledgeUpdate(
        principal=principal_of(request),
        knowledge_id=knowledge_id,
        form=form,
    )
    return json_bytes(await _call(request, subjects.KNOWLEDGE_UPDATE, message))


async def update_access(request: web.Request) -> web.Response:
    form = parse(await read_body(request), AccessForm)
    message = KnowledgeAccessUpdate(
        principal=principal_of(request),
        knowledge_id=_knowledge_id(request),
        form=form,
    )
    return json_bytes(await _call(request, subjects.KNOWLEDGE_ACCESS_UPDATE, message))


async def _file_change(
    request: web.Request, endpoint: Endpoint[KnowledgeFileChange, Any]
) -> web.Response:
    knowledge_id = _knowledge_id(request)
    form = parse(await read_body(request), FileIdForm)
    message = KnowledgeFileChange(
        principal=principal_of(request),
        knowledge_id=knowledge_id,
        file_id=form.file_id,
    )
    return json_bytes(await _call(request, endpoint, message))


async def add_file(request: web.Request) -> web.Response:
    return await _file_change(request, subjects.KNOWLEDGE_FILE_ADD)


async def remove_file(request: web.Request) -> web.Response:
    return await _file_change(request, subjects.KNOWLEDGE_FILE_REMOVE)


async def reset(request: web.Request) -> web.Response:
    return json_bytes(await _call(request, subjects.KNOWLEDGE_RESET, _ref(request)))


async def delete(request: web.Request) -> web.Response:
    await _call(request, subjects.KNOWLEDGE_DELETE, _ref(request))
    return json_bytes(TRUE)


def add_routes(app: web.Application, access: dict[str, Access]) -> None:
    base = "/api/v1/knowledge"
    table: list[Route] = [
        ("POST", f"{base}/create", "knowledge_create", create),
        ("GET", f"{base}/", "knowledge_list", list_knowledge),
        ("GET", base, "knowledge_list_bare", list_knowledge),
        ("GET", f"{base}/list", "knowledge_list_writable", list_writable),
        ("GET", f"{base}/{{knowledge_id}}", "knowledge_get", get),
        ("POST", f"{base}/{{knowledge_id}}/update", "knowledge_update", update),
        (
            "POST",
            f"{base}/{{knowledge_id}}/access/update",
            "knowledge_access_update",
            update_access,
        ),
        ("POST", f"{base}/{{knowledge_id}}/file/add", "knowledge_file_add", add_file),
        ("POST", f"{base}/{{knowledge_id}}/file/remove", "knowledge_file_remove", remove_file),
        ("POST", f"{base}/{{knowledge_id}}/reset", "knowledge_reset", reset),
        ("GET", f"{base}/{{knowledge_id}}/files", "knowledge_files", list_files),
        ("POST", f"{base}/{{knowledge_id}}/files/batch/add", "knowledge_batch_add", batch_add),
        ("POST", f"{base}/{{knowledge_id}}/sync/diff", "knowledge_sync_diff", sync_diff),
        ("POST", f"{base}/{{knowledge_id}}/sync/cleanup", "knowledge_sync_cleanup", sync_cleanup),
        ("DELETE", f"{base}/{{knowledge_id}}/delete", "knowledge_delete", delete),
    ]
    add_route_table(app, access, table, "user")
