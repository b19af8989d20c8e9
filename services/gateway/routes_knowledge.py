"""Open WebUI's knowledge routes, answered by the retrieval service over NATS.

The retrieval service checks every access (`access_grants`, see `common.access`); bodies
are validated here, replies go out as the service sent them.
"""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from common.codec import encode
from contracts import subjects
from contracts.endpoint import Endpoint
from contracts.knowledge import (
    AccessForm,
    FileIdForm,
    KnowledgeAccessUpdate,
    KnowledgeCreate,
    KnowledgeFileChange,
    KnowledgeForm,
    KnowledgeListRequest,
    KnowledgeRef,
    KnowledgeUpdate,
)
from gateway.bodies import TRUE, json_bytes, json_value, parse, read_body
from gateway.state import BUS, SETTINGS, Access, principal_of

Req = TypeVar("Req")


async def _call(request: web.Request, endpoint: Endpoint[Req, Any], message: Req) -> bytes:
    """The retrieval service's reply bytes, relayed as they came."""
    app = request.app
    return await app[BUS].call_raw(
        endpoint, encode(message), timeout=app[SETTINGS].request_timeout_seconds
    )


def _ref(request: web.Request) -> KnowledgeRef:
    return KnowledgeRef(
        principal=principal_of(request), knowledge_id=request.match_info["knowledge_id"]
    )


async def create(request: web.Request) -> web.Response:
    form = parse(await read_body(request), KnowledgeForm)
    message = KnowledgeCreate(principal=principal_of(request), form=form)
    return json_bytes(await _call(request, subjects.KNOWLEDGE_CREATE, message))


async def list_knowledge(request: web.Request) -> web.Response:
    reply = await request.app[BUS].call(
        subjects.KNOWLEDGE_LIST,
        KnowledgeListRequest(principal=principal_of(request)),
        timeout=request.app[SETTINGS].request_timeout_seconds,
    )
    return json_value(reply.items)


async def get(request: web.Request) -> web.Response:
    return json_bytes(await _call(request, subjects.KNOWLEDGE_GET, _ref(request)))


async def update(request: web.Request) -> web.Response:
    form = parse(await read_body(request), KnowledgeForm)
    message = KnowledgeUpdate(
        principal=principal_of(request),
        knowledge_id=request.match_info["knowledge_id"],
        form=form,
    )
    return json_bytes(await _call(request, subjects.KNOWLEDGE_UPDATE, message))


async def update_access(request: web.Request) -> web.Response:
    form = parse(await read_body(request), AccessForm)
    message = KnowledgeAccessUpdate(
        principal=principal_of(request),
        knowledge_id=request.match_info["knowledge_id"],
        form=form,
    )
    return json_bytes(await _call(request, subjects.KNOWLEDGE_ACCESS_UPDATE, message))


async def _file_change(
    request: web.Request, endpoint: Endpoint[KnowledgeFileChange, Any]
) -> web.Response:
    form = parse(await read_body(request), FileIdForm)
    message = KnowledgeFileChange(
        principal=principal_of(request),
        knowledge_id=request.match_info["knowledge_id"],
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
    table: list[tuple[str, str, str, Handler]] = [
        ("POST", f"{base}/create", "knowledge_create", create),
        ("GET", f"{base}/", "knowledge_list", list_knowledge),
        ("GET", base, "knowledge_list_bare", list_knowledge),
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
        ("DELETE", f"{base}/{{knowledge_id}}/delete", "knowledge_delete", delete),
    ]
    for method, path, name, handler in table:
        app.router.add_route(method, path, handler, name=name)
        access[name] = "user"
