"""Workspace models ("presets"): a base model with a system prompt, parameters, attached
knowledge and tools, used by its own id like any model. Shapes as Open WebUI 0.12.4's
`/api/v1/models/*` (`ModelForm`, `ModelModel`, `ModelAccessResponse`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from contracts.access import AccessControl, Grant
from contracts.chat import MAX_TOKENS_LIMIT

PresetId = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^\S+$")]


class PresetForm(msgspec.Struct, kw_only=True):
    """HTTP body of create and update. Grants absent: private on create, unchanged on
    update; `is_active` absent: on for create, unchanged on update."""

    id: PresetId
    base_model_id: str | None = None
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    meta: dict[str, Any] = {}
    params: dict[str, Any] = {}
    access_grants: list[Grant] | UnsetType | None = UNSET
    access_control: AccessControl | UnsetType | None = UNSET
    is_active: bool | UnsetType = UNSET


class PresetAccessForm(msgspec.Struct, kw_only=True):
    """HTTP body of `/model/access/update`."""

    id: PresetId
    access_grants: list[Grant] | UnsetType | None = UNSET
    access_control: AccessControl | UnsetType | None = UNSET


class PresetIdForm(msgspec.Struct, kw_only=True):
    """HTTP body of `/model/delete` (Open WebUI 0.12; `?id=` works too)."""

    id: PresetId


class KnowledgeItem(msgspec.Struct, kw_only=True):
    """An entry of `meta.knowledge`: what `files` would name (other keys are kept as sent)."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    type: Literal["collection", "file"] = "collection"


class PresetMeta(msgspec.Struct, kw_only=True):
    """The parts of `meta` ragway acts on (the rest is stored and returned as sent)."""

    knowledge: list[KnowledgeItem] | None = None
    toolIds: list[Annotated[str, msgspec.Meta(min_length=1, max_length=128)]] | None = None


class PresetParams(msgspec.Struct, kw_only=True):
    """The parameters ragway applies (the rest is stored and returned as sent). A request
    value always wins over the preset's."""

    system: str | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=MAX_TOKENS_LIMIT)] | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    frequency_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    presence_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    reasoning_effort: str | None = None


# the PresetParams that go into an OpenAI request as they are (`system` is a message)
REQUEST_PARAMS = tuple(name for name in PresetParams.__struct_fields__ if name != "system")


class Preset(msgspec.Struct, kw_only=True):
    """A preset as stored (one KV entry each)."""

    id: str
    user_id: str
    base_model_id: str
    name: str
    meta: dict[str, Any] = {}
    params: dict[str, Any] = {}
    access_grants: list[Grant] = []
    is_active: bool = True
    created_at: int
    updated_at: int


class PresetReply(Preset, kw_only=True):
    """What clients get: the legacy `access_control` beside the grants, and whether the
    caller may change it (callers who may only read get empty `params`, as in Open WebUI:
    the system prompt is the curator's)."""

    access_control: AccessControl | None = None
    write_access: bool = False


class PresetList(msgspec.Struct, kw_only=True):
    items: list[PresetReply]
    total: int
