"""What a scoped API key may reach: its models and its collections, nothing else.

A named key may carry `models` and `collections` (`Principal.key`); a caller without one
(a session, the user's own key, an unscoped named key) is limited only by what the user
may do. Every route that takes a model or a collection asks here before doing anything:
chat (`model`, RAG `files`), retrieval queries, knowledge routes by id, the Ollama
pass-through's model. A file named directly is allowed when one of the key's
collections holds it (so a collection-scoped key can still cite one file of its
collections, and nothing else).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from common.bus import Bus
from common.errors import RagwayError, forbidden
from contracts import subjects
from contracts.auth import Principal
from contracts.knowledge import KnowledgeRef
from contracts.retrieval import ScopeItem


def allowed_models(principal: Principal) -> frozenset[str] | None:
    grant = principal.key
    return None if grant is None or grant.models is None else frozenset(grant.models)


def allowed_collections(principal: Principal) -> frozenset[str] | None:
    grant = principal.key
    return None if grant is None or grant.collections is None else frozenset(grant.collections)


def require_model(principal: Principal, model: str) -> None:
    allowed = allowed_models(principal)
    if allowed is not None and model not in allowed:
        raise forbidden(f"This API key may not use model {model!r}")


def require_collection(principal: Principal, knowledge_id: str) -> None:
    allowed = allowed_collections(principal)
    if allowed is not None and knowledge_id not in allowed:
        raise forbidden(f"This API key may not use collection {knowledge_id!r}")


def require_unscoped_collections(principal: Principal, action: str) -> None:
    """For what would reach past a collection scope (creating a new collection)."""
    if allowed_collections(principal) is not None:
        raise forbidden(f"An API key scoped to collections may not {action}")


def visible(principal: Principal, ids: Iterable[str]) -> set[str] | None:
    """Which of `ids` the caller's key may see (None: all of them)."""
    allowed = allowed_collections(principal)
    return None if allowed is None else {i for i in ids if i in allowed}


async def require_items(
    bus: Bus, principal: Principal, items: list[ScopeItem], timeout: float
) -> None:
    """RAG and retrieval `files`: collections in scope, files inside one of them."""
    allowed = allowed_collections(principal)
    if allowed is None:
        return
    for item in items:
        if item.type == "collection":
            require_collection(principal, item.id)
    files = {item.id for item in items if item.type == "file"}
    if not files:
        return
    held = await _files_of(bus, principal, sorted(allowed), timeout)
    outside = sorted(files - held)
    if outside:
        raise forbidden(
            f"This API key may not use file {outside[0]!r}: none of its collections holds it"
        )


async def _files_of(
    bus: Bus, principal: Principal, collections: list[str], timeout: float
) -> set[str]:
    async def one(knowledge_id: str) -> list[str]:
        try:
            reply = await bus.call(
                subjects.KNOWLEDGE_GET,
                KnowledgeRef(principal=principal, knowledge_id=knowledge_id, with_files=False),
                timeout=timeout,
            )
        except RagwayError as exc:
            if exc.code in ("not_found", "forbidden"):
                return []  # a collection of the scope that is gone, or no longer readable
            raise
        return reply.data.file_ids

    found = await asyncio.gather(*(one(c) for c in collections))
    return {file_id for ids in found for file_id in ids}
