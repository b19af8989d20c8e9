"""Open WebUI's knowledge routes, answered by the retrieval service over NATS.

The retrieval service checks every access (read/write per `access_control`); bodies are
validated here, replies go out as the service sent them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from common.codec import encode
from contracts import subjects
from contracts.knowledge import (
    FileIdForm,
    KnowledgeCreate,
    KnowledgeFileChange,
    KnowledgeForm,
    KnowledgeList,
    KnowledgeListRequest,
    KnowledgeRef,
    KnowledgeUpdate,
)
from gateway import scopes
from gateway.bodies import TRUE, json_bytes, json_value, parse, read_body
from gateway.state import BUS, SETTINGS, Access, principal_of

CAPABILITY = "retrieval"


async def _call(request: web.Request, subject: str, message: Any) -> bytes:
    app = request.app
    return await app[BUS].request_raw(
        subject,
        encode(message),
        timeout=app[SETTINGS].request_timeout_seconds,
        capability=CAPABILITY,
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
    reply = await _call(
        request, subjects.KNOWLEDGE_LIST, KnowledgeListRequest(principal=principal_of(request))
    )
    items = parse(reply, KnowledgeList).items
    shown = scopes.visible(principal_of(request), (item.id for item in items))
    return json_value(items if shown is None else [i for i in items if i.id in shown])


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


async def _file_change(request: web.Request, subject: str) -> web.Response:
    knowledge_id = _knowledge_id(request)
    form = parse(await read_body(request), FileIdForm)
    message = KnowledgeFileChange(
        principal=principal_of(request),
        knowledge_id=knowledge_id,
        file_id=form.file_id,
    )
    return json_bytes(await _call(request, subject, message))


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
    table: list[tuple[str, str, str, Handler]] = [
        ("POST", f"{base}/create", "knowledge_create", create),
        ("GET", f"{base}/", "knowledge_list", list_knowledge),
        ("GET", base, "knowledge_list_bare", list_knowledge),
        ("GET", f"{base}/{{knowledge_id}}", "knowledge_get", get),
        ("POST", f"{base}/{{knowledge_id}}/update", "knowledge_update", update),
        ("POST", f"{base}/{{knowledge_id}}/file/add", "knowledge_file_add", add_file),
        ("POST", f"{base}/{{knowledge_id}}/file/remove", "knowledge_file_remove", remove_file),
        ("POST", f"{base}/{{knowledge_id}}/reset", "knowledge_reset", reset),
        ("DELETE", f"{base}/{{knowledge_id}}/delete", "knowledge_delete", delete),
    ]
    for method, path, name, handler in table:
        app.router.add_route(method, path, handler, name=name)
        access[name] = "user"
