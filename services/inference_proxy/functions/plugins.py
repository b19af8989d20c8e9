"""Function models (pipes) and tools: stored in JetStream KV, mirrored in memory by a
watcher (so every proxy replica sees installs at once), validated in the sandbox.

Installing runs the source's top-level code, so validation happens in a worker process
like every call: the proxy never imports admin code itself.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import structlog
from msgspec import UNSET
from nats.js import JetStreamContext

from catalog.buckets import Bucket
from catalog.mirror import Mirror
from common import access
from common.codec import encode
from common.errors import RagwayError, forbidden, invalid, not_found
from contracts.access import AccessControl, Grant
from contracts.auth import Principal
from contracts.functions import (
    FunctionInfo,
    FunctionRecord,
    PluginKind,
    PluginListRequest,
    PluginRef,
    PluginSave,
    ToolInfo,
    ToolRecord,
)
from contracts.models import Model
from inference_proxy.functions.sandbox import (
    Sandbox,
)
from inference_proxy.functions.sandbox_protocol import Call, Failure

log = structlog.get_logger()

Record = FunctionRecord | ToolRecord
_RECORD_TYPES: dict[PluginKind, type[FunctionRecord] | type[ToolRecord]] = {
    "function": FunctionRecord,
    "tool": ToolRecord,
}
PIPE_META = {"type": "pipe"}


_valves_decoder = msgspec.json.Decoder(dict[str, Any])


class PluginStore:
    """Function and tool records by id, and their valves (`<kind>.<id>`, own bucket: a
    record as listed or read never carries them)."""

    def __init__(
        self, functions: Mirror[Any], tools: Mirror[Any], valves: Mirror[dict[str, Any]]
    ) -> None:
        self._mirrors: dict[PluginKind, Mirror[Any]] = {"function": functions, "tool": tools}
        self._valves = valves

    @classmethod
    async def open(cls, js: JetStreamContext, prefix: str, replicas: int) -> PluginStore:
        functions, tools = [
            Mirror[Any](
                await Bucket.open(js, bucket, replicas), msgspec.json.Decoder(record_type).decode
            )
            for bucket, record_type in (
                (f"{prefix}_functions", FunctionRecord),
                (f"{prefix}_tools", ToolRecord),
            )
        ]
        valves = Mirror[dict[str, Any]](
            await Bucket.open(js, f"{prefix}_valves", replicas), _valves_decoder.decode
        )
        store = cls(functions, tools, valves)
        for mirror in store._mirrors.values():
            await mirror.start()
        await valves.start()
        return store

    async def aclose(self) -> None:
        for mirror in self._mirrors.values():
            await mirror.aclose()
        await self._valves.aclose()

    def valves(self, kind: PluginKind, plugin_id: str) -> dict[str, Any]:
        """The admin's valve values for the plugin ({} when none were set)."""
        return dict(self._valves.items.get(f"{kind}.{plugin_id}", {}))

    async def set_valves(self, kind: PluginKind, plugin_id: str, values: dict[str, Any]) -> None:
        key = f"{kind}.{plugin_id}"
        await self._valves.bucket.put(key, encode(values))
        self._valves.items[key] = values

    def get(self, kind: PluginKind, plugin_id: str) -> Any:
        return self._mirrors[kind].items.get(plugin_id)

    def function(self, plugin_id: str) -> FunctionRecord | None:
        found: FunctionRecord | None = self._mirrors["function"].items.get(plugin_id)
        return found

    def tool(self, plugin_id: str) -> ToolRecord | None:
        found: ToolRecord | None = self._mirrors["tool"].items.get(plugin_id)
        return found

    def all(self, kind: PluginKind) -> list[Any]:
        return sorted(self._mirrors[kind].items.values(), key=lambda r: r.id)

    async def create(self, kind: PluginKind, record: Record) -> None:
        mirror = self._mirrors[kind]
        if not await mirror.bucket.claim(record.id, encode(record)):
            raise RagwayError("conflict", f"A {kind} with the id '{record.id}' exists") from None
        mirror.items[record.id] = record  # read-your-writes before the watcher catches up

    async def replace(self, kind: PluginKind, record: Record) -> None:
        mirror = self._mirrors[kind]
        await mirror.bucket.put(record.id, encode(record))
        mirror.items[record.id] = record

    async def delete(self, kind: PluginKind, plugin_id: str) -> None:
        mirror = self._mirrors[kind]
        await mirror.bucket.delete(plugin_id)
        mirror.items.pop(plugin_id, None)
        key = f"{kind}.{plugin_id}"  # a plugin installed again later starts without
        await self._valves.bucket.purge(key)
        self._valves.items.pop(key, None)

    async def migrate_to_grants(self) -> int:
        """Give every record stored before grants existed the grants it meant then (every
        user could use it: public read), explicitly, once; logged. Returns how many."""
        migrated = 0
        for kind, mirror in self._mirrors.items():
            for record in list(mirror.items.values()):
                if record.access_grants is not None:
                    continue
                grants = grants_of(record)

                def change(current: Any, grants: list[Grant] = grants) -> Any:
                    if current.access_grants is not None:
                        return None
                    return _with_grants(current, grants)

                busy = RagwayError("unavailable", "The plugin is busy; try again")
                changed = await mirror.bucket.update(record.id, mirror.decode, change, busy)
                if changed is not None:
                    mirror.items[record.id] = changed[1]
                    migrated += 1
                    log.warning(
                        "plugin_access_migrated",
                        kind=kind,
                        plugin_id=record.id,
                        access_grants=msgspec.to_builtins(grants),
                    )
        return migrated

    def function_models(self, principal: Principal | None = None) -> list[Model]:
        """Active function models; only those `principal` may use when one is given."""
        return [
            Model(
                id=record.id,
                name=record.name,
                object="model",
                created=record.created_at,
                owned_by="function",
                pipe=PIPE_META,
                connection_type="function",
            )
            for record in self.all("function")
            if record.is_active and (principal is None or usable(record, principal))
        ]


def user_of(principal: Principal) -> dict[str, Any]:
    """Open WebUI's `__user__` argument."""
    return {
        "id": principal.id,
        "email": principal.email,
        "name": principal.name,
        "role": principal.role,
    }


def grants_of(record: Record) -> list[Grant]:
    """Its grants; for a record stored before grants, what its legacy object meant (a
    tool's `access_control` null, or a function, which had none: every user)."""
    legacy = record.access_control
    if isinstance(legacy, dict):
        legacy = msgspec.convert(legacy, AccessControl)
    return access.stored_grants(record.access_grants, legacy)


def usable(record: Record, principal: Principal) -> bool:
    """May `principal` list it and use it (call the function model, the tool)?"""
    return access.can_read(principal, record.user_id, grants_of(record))


def _with_grants(record: Record, grants: list[Grant]) -> Record:
    control = access.control_from_grants(grants)
    legacy = control if isinstance(record, FunctionInfo) else msgspec.to_builtins(control)
    return msgspec.structs.replace(record, access_grants=grants, access_control=legacy)


def _require_admin(principal: Principal) -> None:
    if principal.role != "admin":
        raise forbidden("Only administrators may do this")


def _info(record: Record) -> FunctionInfo | ToolInfo:
    info_type = FunctionInfo if isinstance(record, FunctionRecord) else ToolInfo
    info = info_type(**{name: getattr(record, name) for name in info_type.__struct_fields__})
    return _with_grants(info, grants_of(record))  # type: ignore[arg-type]


class PluginService:
    """The PLUGINS_* endpoints: install, list, read, update and remove pipes and tools."""

    def __init__(self, store: PluginStore, sandbox: Sandbox) -> None:
        self._store = store
        self._sandbox = sandbox

    async def save(self, request: PluginSave) -> Record:
        _require_admin(request.principal)
        form = request.form
        plugin_id = (request.id or form.id).strip()
        if not plugin_id.isidentifier():
            raise invalid("Only alphanumeric characters and underscores are allowed in the id")
        kind = request.kind
        now = int(time.time())
        existing = self._store.get(kind, plugin_id) if request.id else None
        if request.id and existing is None:
            raise not_found(f"No {kind} with the id '{plugin_id}'")
        specs = await self.validate(kind, plugin_id, form.content)
        created_at = existing.created_at if existing is not None else now
        owner = existing.user_id if existing is not None else request.principal.id
        requested = access.requested_grants(form.access_grants, form.access_control)
        if existing is None:  # absent: admins only
            grants = [] if requested is UNSET else requested
        else:
            grants = access.changed_grants(request.principal, owner, grants_of(existing), requested)
        record: Record
        if kind == "function":
            record = FunctionRecord(
                id=plugin_id if request.id else plugin_id.lower(),
                user_id=owner,
                name=form.name,
                meta=form.meta,
                content=form.content,
                updated_at=now,
                created_at=created_at,
            )
        else:
            record = ToolRecord(
                id=plugin_id if request.id else plugin_id.lower(),
                user_id=owner,
                name=form.name,
                meta=form.meta,
                specs=specs,
                content=form.content,
                updated_at=now,
                created_at=created_at,
            )
        record = _with_grants(record, grants)
        if request.id:
            await self._store.replace(kind, record)
        else:
            await self._store.create(kind, record)
        log.info("plugin_saved", kind=kind, plugin_id=record.id, created=not request.id)
        return record

    async def validate(self, kind: PluginKind, plugin_id: str, source: str) -> list[dict[str, Any]]:
        """The tool specs (empty for a pipe); `invalid` with the reason when it is unusable."""
        call = Call(
            op="inspect_pipe" if kind == "function" else "inspect_tools",
            plugin_id=plugin_id,
            source=source,
        )
        frame = await self._sandbox.load(call, f"the {kind} source")
        if isinstance(frame, Failure):
            reason = frame.message
            if frame.type != "SourceInvalid":
                reason = f"{frame.type}: {frame.message}"
            raise invalid(f"Invalid {kind} source: {reason}")
        return frame.specs or []

    async def list(self, request: PluginListRequest) -> list[FunctionInfo | ToolInfo]:
        """What the caller may use (admins: everything)."""
        return [
            _info(record)
            for record in self._store.all(request.kind)
            if usable(record, request.principal)
        ]

    async def get(self, request: PluginRef) -> Record | FunctionInfo | ToolInfo:
        """The record with its source for admins; without it for those it is granted to."""
        if request.kind == "function":
            _require_admin(request.principal)  # the source is the admin's business
        record: Record | None = self._store.get(request.kind, request.id)
        if record is None or not usable(record, request.principal):
            raise not_found(f"No {request.kind} with the id '{request.id}'")
        if request.principal.role != "admin":
            return _info(record)
        return _with_grants(record, grants_of(record))

    async def delete(self, request: PluginRef) -> bool:
        _require_admin(request.principal)
        if self._store.get(request.kind, request.id) is None:
            raise not_found(f"No {request.kind} with the id '{request.id}'")
        await self._store.delete(request.kind, request.id)
        log.info("plugin_deleted", kind=request.kind, plugin_id=request.id)
        return True
