"""Workspace models ("presets"): who may use and change them, what they may refer to,
and what a completion by a preset's id becomes.

Why the gateway owns presets (and not the inference-proxy, which owns models): a preset
expands into exactly what the gateway already handles per request — `files` for RAG
(asked of retrieval before the proxy is), `tool_ids`, a system message, parameters —
and both its listing and its use depend on the caller's principal, which only the
gateway holds. Kept here, a completion by a preset costs one KV read and no extra NATS
hop, and one by a plain model id costs a dict lookup.
"""

from __future__ import annotations

from typing import Any

import msgspec

from catalog.files import FileCatalog
from catalog.presets import PresetStore
from common import access
from common.bus import Bus
from common.codec import encode
from common.errors import RagwayError, forbidden, invalid, not_found
from contracts import subjects
from contracts.auth import Principal
from contracts.functions import PluginRef
from contracts.groups import GroupListRequest
from contracts.knowledge import KnowledgeRef
from contracts.models import ModelsRequest
from contracts.presets import (
    REQUEST_PARAMS,
    Preset,
    PresetMeta,
    PresetParams,
    PresetReply,
)
from gateway import prompt_variables

MODEL_NOT_FOUND = "Model not found"


class ListedModel(msgspec.Struct):
    """What a preset needs of an `/api/models` entry."""

    id: str
    owned_by: str = "openai"
    connection_type: str | None = None


class ModelList(msgspec.Struct):
    data: list[ListedModel] = []


_model_list = msgspec.json.Decoder(ModelList)


def meta_of(meta: dict[str, Any]) -> PresetMeta:
    try:
        return msgspec.convert(meta, PresetMeta)
    except msgspec.ValidationError as exc:
        raise invalid(f"Invalid meta: {exc}") from None


def params_of(params: dict[str, Any]) -> PresetParams:
    try:
        return msgspec.convert(params, PresetParams)
    except msgspec.ValidationError as exc:
        raise invalid(f"Invalid params: {exc}") from None


class Presets:
    """Access, references and expansion; the HTTP routes are in `routes_presets`."""

    def __init__(
        self, store: PresetStore, bus: Bus, files: FileCatalog, request_timeout: float
    ) -> None:
        self.store = store
        self._bus = bus
        self._files = files
        self._timeout = request_timeout

    # --- access ----------------------------------------------------------------------

    async def readable(self, principal: Principal, preset_id: str) -> Preset:
        preset = await self.store.get(preset_id)
        if preset is None or not access.can_read(principal, preset.user_id, preset.access_grants):
            raise not_found(MODEL_NOT_FOUND)
        return preset

    async def writable(self, principal: Principal, preset_id: str) -> Preset:
        preset = await self.readable(principal, preset_id)
        if not access.can_write(principal, preset.user_id, preset.access_grants):
            raise forbidden(f"You may use the model '{preset_id}' but not change it")
        return preset

    def reply(self, principal: Principal, preset: Preset) -> PresetReply:
        writer = access.can_write(principal, preset.user_id, preset.access_grants)
        fields = {name: getattr(preset, name) for name in Preset.__struct_fields__}
        if not writer:
            fields["params"] = {}  # the system prompt is the curator's (as in Open WebUI)
        return PresetReply(
            **fields,
            access_control=access.control_from_grants(preset.access_grants),
            write_access=writer,
        )

    def visible(self, principal: Principal) -> list[Preset]:
        """The presets `principal` may read, newest change first (from the mirror)."""
        found = [
            p for p in self.store.all() if access.can_read(principal, p.user_id, p.access_grants)
        ]
        found.sort(key=lambda p: (p.updated_at, p.id), reverse=True)
        return found

    # --- what a preset may refer to --------------------------------------------------

    async def models(self, principal: Principal | None) -> dict[str, ListedModel]:
        """The models `principal` may use (backends and function models), by id; every
        model there is for None."""
        reply = await self._bus.call_raw(
            subjects.MODELS_LIST, encode(ModelsRequest(principal=principal)), timeout=self._timeout
        )
        return {model.id: model for model in _model_list.decode(reply).data}

    async def check_references(
        self, principal: Principal, preset_id: str, base_model_id: str, meta: PresetMeta
    ) -> None:
        """`invalid` naming the first thing the preset refers to that `principal` may not
        use: its base model, a collection, a file or a tool."""
        if base_model_id == preset_id:
            raise invalid("A model cannot be based on itself")
        if self.store.known(base_model_id):
            raise invalid(f"'{base_model_id}' is a workspace model: base a model on a base model")
        if base_model_id not in await self.models(principal):
            raise invalid(f"The base model '{base_model_id}' is not available")
        for item in meta.knowledge or []:
            if item.type == "collection":
                try:
                    await self._bus.call_raw(
                        subjects.KNOWLEDGE_GET,
                        encode(
                            KnowledgeRef(
                                principal=principal, knowledge_id=item.id, with_files=False
                            )
                        ),
                        timeout=self._timeout,
                    )
                except RagwayError as exc:
                    if exc.code != "not_found":
                        raise
                    raise invalid(f"Knowledge '{item.id}' not found") from None
            else:
                record = await self._files.get(item.id)
                if record is None or not access.privileged(principal, record.user_id):
                    raise invalid(f"File '{item.id}' not found")
        for tool_id in meta.toolIds or []:
            try:
                await self._bus.call_raw(
                    subjects.PLUGINS_GET,
                    encode(PluginRef(principal=principal, kind="tool", id=tool_id)),
                    timeout=self._timeout,
                )
            except RagwayError as exc:
                if exc.code != "not_found":
                    raise
                raise invalid(f"Tool '{tool_id}' not found") from None

    # --- use -------------------------------------------------------------------------

    async def expand(self, principal: Principal, body: dict[str, Any]) -> Preset | None:
        """Turn `body` (a completion naming a preset) into one for its base model: the
        preset's system prompt first, its parameters where the request has none, its
        knowledge as `files`, its tools as `tool_ids`. Returns the preset; None when the
        caller may not read it (or it is gone): then the id is just a model id, so a
        preset nobody shared never hides anything from anyone."""
        preset = await self.store.get(str(body.get("model")))
        if preset is None or not access.can_read(principal, preset.user_id, preset.access_grants):
            return None
        if not preset.is_active:
            raise invalid(f"The model '{preset.id}' is turned off")
        base = preset.base_model_id
        if base not in await self.models(principal):
            raise invalid(f"The model '{preset.id}' is based on '{base}', which is not available")
        body["model"] = base
        params, meta = params_of(preset.params), meta_of(preset.meta)
        if params.system:
            system = await prompt_variables.fill(
                params.system, principal, lambda: self._group_names(principal)
            )
            body["messages"] = prompt_variables.with_system_message(body["messages"], system)
        for name in REQUEST_PARAMS:
            value = getattr(params, name)
            if value is not None and body.get(name) is None:
                body[name] = value
        if meta.knowledge:
            files = list(body.get("files") or [])
            named = {(f.get("type", "file"), f.get("id")) for f in files if isinstance(f, dict)}
            for item in meta.knowledge:
                if (item.type, item.id) not in named:
                    files.append({"type": item.type, "id": item.id})
            body["files"] = files
        if meta.toolIds:
            body["tool_ids"] = list(dict.fromkeys([*(body.get("tool_ids") or []), *meta.toolIds]))
        return preset

    def knowledge_error(self, preset: Preset, exc: RagwayError) -> RagwayError:
        """A retrieval refusal about the preset's own knowledge, said as such (the caller
        named no such thing); anything else as it was."""
        if exc.code != "not_found":
            return exc
        for item in meta_of(preset.meta).knowledge or []:
            if item.id in exc.detail:
                what = "knowledge" if item.type == "collection" else "file"
                return invalid(
                    f"The model '{preset.id}' uses {what} '{item.id}', which is not available"
                    " (deleted, or not shared with you)"
                )
        return exc

    async def _group_names(self, principal: Principal) -> list[str]:
        reply = await self._bus.call(
            subjects.AUTH_GROUPS_LIST, GroupListRequest(principal=principal), timeout=self._timeout
        )
        return [group.name for group in reply.items]

    # --- listing in /api/models ------------------------------------------------------

    def listed(self, principal: Principal, models: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`/api/models` entries for the active presets `principal` may read whose base
        model is in `models` (Open WebUI leaves out presets whose base is gone)."""
        by_id = {m.get("id"): m for m in models}
        entries = []
        for preset in self.visible(principal):
            base = by_id.get(preset.base_model_id)
            if not preset.is_active or base is None:
                continue
            entries.append(
                {
                    "id": preset.id,
                    "name": preset.name,
                    "object": "model",
                    "created": preset.created_at,
                    "owned_by": base.get("owned_by", "openai"),
                    "connection_type": base.get("connection_type", "external"),
                    "preset": True,
                    "info": msgspec.to_builtins(self.reply(principal, preset)),
                }
            )
        return entries
