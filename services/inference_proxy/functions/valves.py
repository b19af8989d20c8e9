"""Valves: an admin's settings (and secrets) for one function or tool, Open WebUI's way.

The plugin declares them as a pydantic `Valves` class; the proxy never imports it: the
schema is read, and new values are checked, in a sandbox worker. Values are stored in
their own KV bucket and handed to the plugin on each call (`self.valves`). Every
endpoint is admin-only; values are never logged, and validation errors name fields and
rules, never the values given.

One valve belongs to ragway, not to the plugin: `RAGWAY_ALLOW_NETWORK` (a boolean,
default false) runs the plugin's calls with the host's network instead of none. Only an
admin sets it, through `valves/update`; the plugin's own defaults cannot turn it on.
"""

from __future__ import annotations

from typing import Any

import structlog

from common.errors import forbidden, invalid, not_found
from contracts.auth import Principal
from contracts.functions import PluginKind, ValvesRef, ValvesUpdate
from inference_proxy.functions.plugins import PluginStore
from inference_proxy.functions.sandbox import (
    Sandbox,
)
from inference_proxy.functions.sandbox_protocol import Call, Failure

log = structlog.get_logger()

NETWORK_VALVE = "RAGWAY_ALLOW_NETWORK"
NETWORK_SCHEMA = {
    "type": "boolean",
    "default": False,
    "title": "Allow network (ragway)",
    "description": "Run this plugin with the host's network; without it, it has none.",
}


def plugin_values(values: dict[str, Any]) -> dict[str, Any]:
    """What the plugin's own Valves class gets (ragway's valve left out)."""
    return {key: value for key, value in values.items() if key != NETWORK_VALVE}


def network_allowed(values: dict[str, Any]) -> bool:
    return values.get(NETWORK_VALVE) is True


def _require_admin(principal: Principal) -> None:
    if principal.role != "admin":
        raise forbidden("Only administrators may read or change valves")


class ValveService:
    """The PLUGINS_VALVES_* endpoints."""

    def __init__(self, store: PluginStore, sandbox: Sandbox) -> None:
        self._store = store
        self._sandbox = sandbox

    def _record(self, principal: Principal, kind: PluginKind, plugin_id: str) -> Any:
        _require_admin(principal)
        record = self._store.get(kind, plugin_id)
        if record is None:
            raise not_found(f"No {kind} with the id '{plugin_id}'")
        return record

    async def get(self, request: ValvesRef) -> dict[str, Any]:
        self._record(request.principal, request.kind, request.id)
        return self._store.valves(request.kind, request.id)

    async def spec(self, request: ValvesRef) -> dict[str, Any]:
        """The plugin's Valves JSON schema, with ragway's network valve added."""
        record = self._record(request.principal, request.kind, request.id)
        schema = await self._ask(Call(op="valves_spec", plugin_id=record.id, source=record.content))
        if schema is None:
            schema = {"title": "Valves", "type": "object", "properties": {}}
        properties = dict(schema.get("properties") or {})
        properties[NETWORK_VALVE] = NETWORK_SCHEMA
        return {**schema, "properties": properties}

    async def update(self, request: ValvesUpdate) -> dict[str, Any]:
        """Check the values against the plugin's Valves class, then store them (they
        replace the earlier ones). None values are left out, as Open WebUI does."""
        record = self._record(request.principal, request.kind, request.id)
        values = {key: value for key, value in request.values.items() if value is not None}
        network = values.get(NETWORK_VALVE, False)
        if not isinstance(network, bool):
            raise invalid(f"Invalid valves: {NETWORK_VALVE}: must be true or false")
        own = plugin_values(values)
        checked: dict[str, Any] = {}
        if own:
            call = Call(op="valves_check", plugin_id=record.id, source=record.content, valves=own)
            checked = await self._ask(call) or {}
        stored = {**checked, NETWORK_VALVE: True} if network else checked
        await self._store.set_valves(request.kind, record.id, stored)
        # the names only: values may be secrets
        log.info(
            "plugin_valves_updated",
            kind=request.kind,
            plugin_id=record.id,
            fields=sorted(stored),
            network=network,
        )
        return stored

    async def _ask(self, call: Call) -> dict[str, Any] | None:
        frame = await self._sandbox.load(call, "the plugin")
        if isinstance(frame, Failure):
            reason = frame.message
            if frame.type != "SourceInvalid":
                # what the plugin raised while checking values may quote them: type only
                secret = call.op == "valves_check"
                reason = frame.type if secret else f"{frame.type}: {frame.message}"
            raise invalid(reason)
        return frame.data
