"""Linking files to a collection from routes that are not the knowledge routes (an
upload's `metadata.knowledge_id`, `process/text`'s `collection_name`): the retrieval
service checks access, as for `file/add`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from common.errors import RagwayError, invalid
from contracts import subjects
from contracts.knowledge import KnowledgeFileChange, KnowledgeRef, KnowledgeReply
from gateway.state import BUS, SETTINGS, principal_of


async def knowledge_of(
    request: web.Request, knowledge_id: str, with_files: bool = False
) -> KnowledgeReply:
    """The collection as the caller may see it (`not_found` otherwise); its files'
    records only when asked for (a check needs none)."""
    ref = KnowledgeRef(
        principal=principal_of(request), knowledge_id=knowledge_id, with_files=with_files
    )
    return await request.app[BUS].call(
        subjects.KNOWLEDGE_GET, ref, timeout=request.app[SETTINGS].request_timeout_seconds
    )


async def writable_knowledge(request: web.Request, knowledge_id: str) -> KnowledgeReply:
    """The collection, if the caller may add files to it; `forbidden`/`not_found` else."""
    knowledge = await knowledge_of(request, knowledge_id)
    if not knowledge.write_access:
        raise RagwayError("forbidden", f"You may not add files to knowledge {knowledge_id}")
    return knowledge


async def writable_knowledge_of(request: web.Request, metadata: dict[str, Any]) -> str | None:
    """An upload's `metadata.knowledge_id`, checked writable before the file is kept."""
    knowledge_id = metadata.get("knowledge_id")
    if knowledge_id is None or knowledge_id == "":
        return None
    if not isinstance(knowledge_id, str):
        raise invalid("`metadata.knowledge_id` must be a string")
    await writable_knowledge(request, knowledge_id)
    return knowledge_id


async def link_to_knowledge(request: web.Request, knowledge_id: str, file_id: str) -> None:
    change = KnowledgeFileChange(
        principal=principal_of(request),
        knowledge_id=knowledge_id,
        file_id=file_id,
        with_files=False,  # the reply is not read: no need for the files' records
    )
    await request.app[BUS].call(
        subjects.KNOWLEDGE_FILE_ADD, change, timeout=request.app[SETTINGS].request_timeout_seconds
    )
