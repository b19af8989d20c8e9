"""Lookups shared by several commands: lists in either reply shape, knowledge by name or id."""

from __future__ import annotations

from typing import Any

from ragway_cli.client import Api
from ragway_cli.errors import CliError


def items_of(body: Any, *keys: str) -> list[dict[str, Any]]:
    """A list reply, bare or wrapped (`{"items": [...]}`, `{"data": [...]}`, ...)."""
    if isinstance(body, list):
        return [item for item in body if isinstance(item, dict)]
    if isinstance(body, dict):
        for key in (*keys, "items", "data"):
            value = body.get(key)
            if isinstance(value, list):
                return [item for item in value if isinstance(item, dict)]
    return []


async def list_knowledge(api: Api) -> list[dict[str, Any]]:
    return items_of(await api.call("GET", "/api/v1/knowledge/"))


async def find_knowledge(api: Api, name_or_id: str) -> dict[str, Any] | None:
    """The collection with this id, else the one with this name (writable ones first)."""
    collections = await list_knowledge(api)
    for item in collections:
        if item.get("id") == name_or_id:
            return item
    named = [item for item in collections if item.get("name") == name_or_id]
    named.sort(key=lambda item: not item.get("write_access", True))
    return named[0] if named else None


async def knowledge_id(api: Api, name_or_id: str) -> str:
    found = await find_knowledge(api, name_or_id)
    if found is None:
        raise CliError(f"Not found: no knowledge collection named or with id {name_or_id!r}")
    return str(found["id"])


async def create_knowledge(
    api: Api, name: str, description: str = "", public: bool = False
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "description": description,
        "access_control": None if public else {},
    }
    created = await api.call("POST", "/api/v1/knowledge/create", json=body)
    if not isinstance(created, dict) or "id" not in created:
        raise CliError("ragway answered knowledge/create without an id")
    return created
