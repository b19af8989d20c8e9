"""Open WebUI's workspace model routes (`/api/v1/models/*`), served by the gateway from
the presets bucket (see `gateway.presets` for why the gateway owns them).

`?id=` names the model as in Open WebUI's routes; update, delete and access updates
also take it from the body (0.12 clients send it there).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from msgspec import UNSET

from catalog.presets import now
from common import access
from common.errors import RagwayError, invalid
from contracts.presets import (
    Preset,
    PresetAccessForm,
    PresetForm,
    PresetIdForm,
    PresetList,
)
from gateway.bodies import TRUE, json_bytes, json_value, parse, read_body
from gateway.presets import Presets, meta_of, params_of
from gateway.state import PRESETS, Access, Route, add_route_table, principal_of

MAX_ID_LENGTH = 256


def _presets(request: web.Request) -> Presets:
    return request.app[PRESETS]


def _query_id(request: web.Request, body_id: str | None = None) -> str:
    """The model's id from `?id=` or the body; both given, they must agree."""
    query_id = request.query.get("id")
    if query_id and body_id and query_id != body_id:
        raise invalid(f"?id={query_id} and the body's id '{body_id}' differ")
    found = query_id or body_id
    if not found:
        raise invalid("The model's id is required (?id=)")
    return found


async def create(request: web.Request) -> web.Response:
    presets, principal = _presets(request), principal_of(request)
    form = parse(await read_body(request), PresetForm)
    if not form.base_model_id:
        raise invalid("base_model_id is required: a workspace model wraps a base model")
    meta, _ = meta_of(form.meta), params_of(form.params)
    if form.id in await presets.models(None):  # hidden function models included
        raise RagwayError("conflict", f"The id '{form.id}' is taken by a model")
    await presets.check_references(principal, form.id, form.base_model_id, meta)
    requested = access.requested_grants(form.access_grants, form.access_control)
    stamp = now()
    preset = Preset(
        id=form.id,
        user_id=principal.id,
        base_model_id=form.base_model_id,
        name=form.name,
        meta=form.meta,
        params=form.params,
        access_grants=[] if requested is UNSET else requested,  # absent: private
        is_active=True if form.is_active is UNSET else form.is_active,
        created_at=stamp,
        updated_at=stamp,
    )
    if not await presets.store.create(preset):
        raise RagwayError("conflict", f"The id '{form.id}' is taken by a model")
    return json_value(presets.reply(principal, preset))


async def list_presets(request: web.Request) -> web.Response:
    presets, principal = _presets(request), principal_of(request)
    items = [presets.reply(principal, p) for p in presets.visible(principal)]
    return json_value(PresetList(items=items, total=len(items)))


async def get(request: web.Request) -> web.Response:
    presets, principal = _presets(request), principal_of(request)
    return json_value(
        presets.reply(principal, await presets.readable(principal, _query_id(request)))
    )


async def update(request: web.Request) -> web.Response:
    presets, principal = _presets(request), principal_of(request)
    form = parse(await read_body(request), PresetForm)
    preset_id = _query_id(request, form.id)
    current = await presets.writable(principal, preset_id)
    base = form.base_model_id or current.base_model_id
    meta, _ = meta_of(form.meta), params_of(form.params)
    await presets.check_references(principal, preset_id, base, meta)
    requested = access.requested_grants(form.access_grants, form.access_control)

    def change(stored: Preset) -> Preset:
        grants = access.changed_grants(principal, stored.user_id, stored.access_grants, requested)
        stored.base_model_id = base
        stored.name = form.name
        stored.meta = form.meta
        stored.params = form.params
        stored.access_grants = grants
        if form.is_active is not UNSET:
            stored.is_active = form.is_active
        stored.updated_at = now()
        return stored

    return json_value(presets.reply(principal, await _changed(presets, preset_id, change)))


async def update_access(request: web.Request) -> web.Response:
    presets, principal = _presets(request), principal_of(request)
    form = parse(await read_body(request), PresetAccessForm)
    preset_id = _query_id(request, form.id)
    await presets.writable(principal, preset_id)
    requested = access.requested_grants(form.access_grants, form.access_control)
    if requested is UNSET:
        raise invalid("access_grants (or access_control) is required")

    def change(stored: Preset) -> Preset:
        stored.access_grants = access.changed_grants(
            principal, stored.user_id, stored.access_grants, requested
        )
        stored.updated_at = now()
        return stored

    return json_value(presets.reply(principal, await _changed(presets, preset_id, change)))


async def toggle(request: web.Request) -> web.Response:
    presets, principal = _presets(request), principal_of(request)
    preset_id = _query_id(request)
    await presets.writable(principal, preset_id)

    def change(stored: Preset) -> Preset:
        stored.is_active = not stored.is_active
        stored.updated_at = now()
        return stored

    return json_value(presets.reply(principal, await _changed(presets, preset_id, change)))


async def delete(request: web.Request) -> web.Response:
    presets, principal = _presets(request), principal_of(request)
    body_id = None
    if request.body_exists and not request.query.get("id"):
        body_id = parse(await read_body(request), PresetIdForm).id
    preset_id = _query_id(request, body_id)
    await presets.writable(principal, preset_id)
    await presets.store.delete(preset_id)
    return json_bytes(TRUE)


async def _changed(presets: Presets, preset_id: str, change: Callable[[Preset], Preset]) -> Preset:
    updated = await presets.store.update(preset_id, change)
    if updated is None:
        raise RagwayError("not_found", "Model not found")
    return updated


def add_routes(app: web.Application, access_table: dict[str, Access]) -> None:
    base = "/api/v1/models"
    table: list[Route] = [
        ("POST", f"{base}/create", "presets_create", create),
        ("GET", f"{base}/", "presets_list", list_presets),
        ("GET", f"{base}/list", "presets_list_0_12", list_presets),
        ("GET", f"{base}/model", "presets_get", get),
        ("POST", f"{base}/model/update", "presets_update", update),
        ("POST", f"{base}/model/access/update", "presets_access_update", update_access),
        ("POST", f"{base}/model/toggle", "presets_toggle", toggle),
        ("POST", f"{base}/model/delete", "presets_delete", delete),
        ("DELETE", f"{base}/model/delete", "presets_delete_http", delete),
    ]
    add_route_table(app, access_table, table, "user")
