"""Function models (pipes) and tools: admin-installed Python source, stored and run by
the inference-proxy. The HTTP forms and records follow Open WebUI's `/api/v1/functions`
and `/api/v1/tools` shapes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from contracts.access import AccessControl, Grant
from contracts.auth import Principal

PluginKind = Literal["function", "tool"]

# Open WebUI requires a Python identifier (it imports the source as a module by that id)
PluginId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
MAX_SOURCE_CHARS = 512 * 1024


class PluginMeta(msgspec.Struct, kw_only=True, omit_defaults=True):
    description: str = ""
    manifest: dict[str, Any] = {}


class PluginForm(msgspec.Struct, kw_only=True):
    """The body of `/functions/create`, `/tools/create` and their `/id/{id}/update`."""

    id: PluginId
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    content: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SOURCE_CHARS)]
    meta: PluginMeta = msgspec.field(default_factory=PluginMeta)
    # who may use it; absent: admins only on create, unchanged on update
    access_grants: list[Grant] | UnsetType | None = UNSET
    access_control: AccessControl | UnsetType | None = UNSET


class FunctionInfo(msgspec.Struct, kw_only=True):
    """A function as listed (Open WebUI's FunctionResponse: no source)."""

    id: str
    user_id: str
    type: Literal["pipe"] = "pipe"
    name: str
    meta: PluginMeta = msgspec.field(default_factory=PluginMeta)
    is_active: bool = True
    is_global: bool = False
    # None: stored before grants existed (every user could use it); the proxy migrates
    # such records to an explicit public grant when it starts
    access_grants: list[Grant] | None = None
    access_control: AccessControl | None = None  # in replies: what the grants mean
    updated_at: int = 0
    created_at: int = 0


class FunctionRecord(FunctionInfo, kw_only=True):
    """A function with its source (Open WebUI's FunctionModel); what the store keeps."""

    content: str = ""


class ToolInfo(msgspec.Struct, kw_only=True):
    """A tool as listed: its OpenAI function specs, no source."""

    id: str
    user_id: str
    name: str
    meta: PluginMeta = msgspec.field(default_factory=PluginMeta)
    specs: list[dict[str, Any]] = []
    access_control: dict[str, Any] | None = None
    # None: stored before grants existed (`access_control` null: every user could use it);
    # the proxy migrates such records to explicit grants when it starts
    access_grants: list[Grant] | None = None
    updated_at: int = 0
    created_at: int = 0


class ToolRecord(ToolInfo, kw_only=True):
    content: str = ""


class PluginSave(msgspec.Struct, frozen=True, kw_only=True):
    """Create (`id` empty: taken from the form) or update (`id` from the path)."""

    principal: Principal
    kind: PluginKind
    form: PluginForm
    id: str = ""


class PluginRef(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    kind: PluginKind
    id: str


class PluginListRequest(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    kind: PluginKind


class ValvesRef(msgspec.Struct, frozen=True, kw_only=True):
    """A plugin's valves (`/functions|tools/id/{id}/valves`, `.../valves/spec`)."""

    principal: Principal
    kind: PluginKind
    id: str


class ValvesUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """`.../valves/update`: the new values (they replace the stored ones), checked against
    the plugin's `Valves` class in the sandbox."""

    principal: Principal
    kind: PluginKind
    id: str
    values: dict[str, Any]
