"""Open WebUI's function (pipe) and tool routes, answered by the inference-proxy.

Writes are admin-only here and again in the proxy; lists show every signed-in user what
it was granted (`access_grants`; absent: admins only), tools' specs included; only
admins see source. Installing validates the source in the proxy's sandbox, so it gets
the completion timeout rather than the short request one, as do the valve routes that
load the source (`valves/spec`, `valves/update`). Valves are admin-only, read and write.
"""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from common.codec import encode
from contracts import subjects
from contracts.endpoint import Endpoint
from contracts.functions import (
    PluginForm,
    PluginKind,
    PluginListRequest,
    PluginRef,
    PluginSave,
    ValvesRef,
    ValvesUpdate,
)
from gateway.bodies import TRUE, json_bytes, parse, read_body
from gateway.state import BUS, SETTINGS, Access, principal_of

Req = TypeVar("Req")


async def _call(
    request: web.Request, endpoint: Endpoint[Req, Any], message: Req, *, slow: bool = False
) -> bytes:
    """The proxy's reply bytes, relayed as they came (a record is one of two types)."""
    settings = request.app[SETTINGS]
    return await request.app[BUS].call_raw(
        endpoint,
        encode(message),
        timeout=settings.completion_timeout_seconds if slow else settings.request_timeout_seconds,
    )


def _handlers(kind: PluginKind) -> dict[str, Handler]:
    def ref(request: web.Request) -> PluginRef:
        return PluginRef(principal=principal_of(request), kind=kind, id=request.match_info["id"])

    async def create(request: web.Request) -> web.Response:
        form = parse(await read_body(request), PluginForm)
        message = PluginSave(principal=principal_of(request), kind=kind, form=form)
        return json_bytes(await _call(request, subjects.PLUGINS_SAVE, message, slow=True))

    async def list_all(request: web.Request) -> web.Response:
        message = PluginListRequest(principal=principal_of(request), kind=kind)
        return json_bytes(await _call(request, subjects.PLUGINS_LIST, message))

    async def get(request: web.Request) -> web.Response:
        return json_bytes(await _call(request, subjects.PLUGINS_GET, ref(request)))

    async def update(request: web.Request) -> web.Response:
        form = parse(await read_body(request), PluginForm)
        message = PluginSave(
            principal=principal_of(request), kind=kind, form=form, id=request.match_info["id"]
        )
        return json_bytes(await _call(request, subjects.PLUGINS_SAVE, message, slow=True))

    async def delete(request: web.Request) -> web.Response:
        await _call(request, subjects.PLUGINS_DELETE, ref(request))
        return json_bytes(TRUE)

    def valves_ref(request: web.Request) -> ValvesRef:
        return ValvesRef(principal=principal_of(request), kind=kind, id=request.match_info["id"])

    async def valves(request: web.Request) -> web.Response:
        return json_bytes(await _call(request, subjects.PLUGINS_VALVES_GET, valves_ref(request)))

    async def valves_spec(request: web.Request) -> web.Response:
        ref = valves_ref(request)
        return json_bytes(await _call(request, subjects.PLUGINS_VALVES_SPEC, ref, slow=True))

    async def valves_update(request: web.Request) -> web.Response:
        values = parse(await read_body(request), dict[str, Any])
        message = ValvesUpdate(
            principal=principal_of(request), kind=kind, id=request.match_info["id"], values=values
        )
        return json_bytes(await _call(request, subjects.PLUGINS_VALVES_UPDATE, message, slow=True))

    return {
        "create": create,
        "list": list_all,
        "get": get,
        "update": update,
        "delete": delete,
        "valves": valves,
        "valves_spec": valves_spec,
        "valves_update": valves_update,
    }


def add_routes(app: web.Application, access: dict[str, Access]) -> None:
    for kind, plural in (("function", "functions"), ("tool", "tools")):
        handlers = _handlers(kind)  # type: ignore[arg-type]
        base = f"/api/v1/{plural}"
        # a function's record is for admins; a tool's (without source) for its grantees
        read_one: Access = "admin" if kind == "function" else "user"
        table: list[tuple[str, str, str, Access]] = [
            ("POST", f"{base}/create", "create", "admin"),
            ("GET", f"{base}/", "list", "user"),
            ("GET", base, "list", "user"),
            ("GET", f"{base}/id/{{id}}", "get", read_one),
            ("POST", f"{base}/id/{{id}}/update", "update", "admin"),
            ("DELETE", f"{base}/id/{{id}}/delete", "delete", "admin"),
            ("GET", f"{base}/id/{{id}}/valves", "valves", "admin"),
            ("GET", f"{base}/id/{{id}}/valves/spec", "valves_spec", "admin"),
            ("POST", f"{base}/id/{{id}}/valves/update", "valves_update", "admin"),
        ]
        for method, path, action, level in table:
            name = f"{plural}_{action}" + ("_bare" if path == base else "")
            app.router.add_route(method, path, handlers[action], name=name)
            access[name] = level
