"""Open WebUI's group routes, answered by the auth service (which owns membership).

Admins manage groups; every signed-in user lists and reads the groups it is a member of
(auth filters, and answers 404 for a group the caller is not in).
"""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from common.codec import encode
from contracts import subjects
from contracts.endpoint import Endpoint
from contracts.groups import (
    GroupCreate,
    GroupForm,
    GroupList,
    GroupListRequest,
    GroupMembersChange,
    GroupRef,
    GroupUpdate,
    UserIdsForm,
)
from gateway.bodies import TRUE, json_bytes, json_value, parse, read_body
from gateway.state import BUS, SETTINGS, Access, principal_of

Req = TypeVar("Req")


async def _call(request: web.Request, endpoint: Endpoint[Req, Any], message: Req) -> bytes:
    app = request.app
    return await app[BUS].call_raw(
        endpoint, encode(message), timeout=app[SETTINGS].request_timeout_seconds
    )


def _ref(request: web.Request) -> GroupRef:
    return GroupRef(principal=principal_of(request), group_id=request.match_info["group_id"])


async def list_groups(request: web.Request) -> web.Response:
    reply = await _call(
        request, subjects.AUTH_GROUPS_LIST, GroupListRequest(principal=principal_of(request))
    )
    return json_value(parse(reply, GroupList).items)


async def create(request: web.Request) -> web.Response:
    form = parse(await read_body(request), GroupForm)
    message = GroupCreate(principal=principal_of(request), form=form)
    return json_bytes(await _call(request, subjects.AUTH_GROUP_CREATE, message))


async def get(request: web.Request) -> web.Response:
    return json_bytes(await _call(request, subjects.AUTH_GROUP_GET, _ref(request)))


async def update(request: web.Request) -> web.Response:
    form = parse(await read_body(request), GroupForm)
    message = GroupUpdate(
        principal=principal_of(request), group_id=request.match_info["group_id"], form=form
    )
    return json_bytes(await _call(request, subjects.AUTH_GROUP_UPDATE, message))


async def _members(
    request: web.Request, endpoint: Endpoint[GroupMembersChange, Any]
) -> web.Response:
    form = parse(await read_body(request), UserIdsForm)
    message = GroupMembersChange(
        principal=principal_of(request),
        group_id=request.match_info["group_id"],
        user_ids=form.user_ids,
    )
    return json_bytes(await _call(request, endpoint, message))


async def add_users(request: web.Request) -> web.Response:
    return await _members(request, subjects.AUTH_GROUP_USERS_ADD)


async def remove_users(request: web.Request) -> web.Response:
    return await _members(request, subjects.AUTH_GROUP_USERS_REMOVE)


async def delete(request: web.Request) -> web.Response:
    await _call(request, subjects.AUTH_GROUP_DELETE, _ref(request))
    return json_bytes(TRUE)


def add_routes(app: web.Application, access: dict[str, Access]) -> None:
    base = "/api/v1/groups"
    one = f"{base}/id/{{group_id}}"
    table: list[tuple[str, str, str, Handler, Access]] = [
        ("GET", f"{base}/", "groups_list", list_groups, "user"),
        ("POST", f"{base}/create", "groups_create", create, "admin"),
        ("GET", one, "groups_get", get, "user"),
        ("POST", f"{one}/update", "groups_update", update, "admin"),
        ("POST", f"{one}/users/add", "groups_users_add", add_users, "admin"),
        ("POST", f"{one}/users/remove", "groups_users_remove", remove_users, "admin"),
        ("DELETE", f"{one}/delete", "groups_delete", delete, "admin"),
    ]
    for method, path, name, handler, level in table:
        app.router.add_route(method, path, handler, name=name)
        access[name] = level
