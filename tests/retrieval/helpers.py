"""Helpers of the retrieval tests: stand-ins for the gateway and the ingestion workers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from catalog.files import FileCatalog, now
from common.bus import Bus
from common.errors import RagwayError
from contracts import subjects
from contracts.access import AccessControl
from contracts.auth import Principal, Role
from contracts.endpoint import Endpoint, Rep, Req
from contracts.files import FileData, FileMeta, FileRecord, FileStatus
from contracts.knowledge import (
    KnowledgeCreate,
    KnowledgeFileChange,
    KnowledgeForm,
    KnowledgeRef,
    KnowledgeReply,
)
from contracts.retrieval import (
    ChunkVector,
    RetrievalQuery,
    RetrievalResult,
    ScopeItem,
    UpsertChunks,
    VectorsWritten,
)
from retrieval.app import Retrieval


def user(role: Role = "user") -> Principal:
    uid = uuid.uuid4().hex[:12]
    return Principal(id=f"u-{uid}", email=f"{uid}@example.com", name=uid, role=role)


async def add_file(
    catalog: FileCatalog,
    owner: Principal,
    name: str = "notes.txt",
    status: FileStatus = "completed",
    error: str | None = None,
) -> FileRecord:
    stamp = now()
    record = FileRecord(
        id=str(uuid.uuid4()),
        user_id=owner.id,
        hash=uuid.uuid4().hex,
        filename=name,
        data=FileData(status=status, error=error),
        meta=FileMeta(name=name, content_type="text/plain", size=1),
        created_at=stamp,
        updated_at=stamp,
    )
    await catalog.create(record)
    return record


async def set_status(
    catalog: FileCatalog, file_id: str, status: FileStatus, error: str | None = None
) -> None:
    def change(record: FileRecord) -> FileRecord:
        record.data = FileData(status=status, error=error)
        return record

    await catalog.update(file_id, change)


async def write_chunks(
    bus: Bus,
    retrieval: Retrieval,
    record: FileRecord,
    texts: Sequence[str],
    metadata: dict[str, object] | None = None,
) -> VectorsWritten:
    """Embed like an ingestion worker does, then send the vectors to the service."""
    embedder = retrieval.embedder
    dense = await asyncio.to_thread(embedder.embed_documents, list(texts))
    sparse = await asyncio.to_thread(embedder.sparse_documents, list(texts))
    chunks = [
        ChunkVector(
            index=i,
            text=text,
            dense=d,
            sparse_indices=s.indices,
            sparse_values=s.values,
            metadata=dict(metadata or {}),
        )
        for i, (text, d, s) in enumerate(zip(texts, dense, sparse, strict=True))
    ]
    return await bus.call(
        subjects.VECTORS_UPSERT,
        UpsertChunks(file_id=record.id, owner=record.user_id, name=record.meta.name, chunks=chunks),
        timeout=10,
    )


async def ingested(
    bus: Bus,
    retrieval: Retrieval,
    catalog: FileCatalog,
    owner: Principal,
    texts: Sequence[str],
    name: str = "notes.txt",
) -> FileRecord:
    """A completed file with its chunks in the store."""
    record = await add_file(catalog, owner, name, status="processing")
    await write_chunks(bus, retrieval, record, texts)
    await set_status(catalog, record.id, "completed")
    return record


async def call(bus: Bus, endpoint: Endpoint[Req, Rep], message: Req) -> Rep:
    return await bus.call(endpoint, message, timeout=10)


async def create(
    bus: Bus, owner: Principal, access_control: AccessControl | None, name: str = "Kitchen"
) -> KnowledgeReply:
    form = KnowledgeForm(name=name, description="recipes", access_control=access_control)
    reply: KnowledgeReply = await call(
        bus, subjects.KNOWLEDGE_CREATE, KnowledgeCreate(principal=owner, form=form)
    )
    return reply


async def add(bus: Bus, who: Principal, knowledge_id: str, file_id: str) -> KnowledgeReply:
    change = KnowledgeFileChange(principal=who, knowledge_id=knowledge_id, file_id=file_id)
    reply: KnowledgeReply = await call(bus, subjects.KNOWLEDGE_FILE_ADD, change)
    return reply


async def get(bus: Bus, who: Principal, knowledge_id: str) -> KnowledgeReply:
    ref = KnowledgeRef(principal=who, knowledge_id=knowledge_id)
    reply: KnowledgeReply = await call(bus, subjects.KNOWLEDGE_GET, ref)
    return reply


async def search(bus: Bus, who: Principal, knowledge_id: str, text: str) -> RetrievalResult:
    request = RetrievalQuery(
        principal=who, query=text, items=[ScopeItem(type="collection", id=knowledge_id)]
    )
    result: RetrievalResult = await call(bus, subjects.RETRIEVAL_QUERY, request)
    return result


async def error_code(call_it: Any) -> str:
    with pytest.raises(RagwayError) as caught:
        await call_it
    return caught.value.code


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
