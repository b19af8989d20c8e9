"""Files: the record clients see (Open WebUI's file object), and ingestion jobs.

Records live in JetStream KV (see `catalog`), blobs in the JetStream object store, jobs
on a work-queue stream that every ingestion worker pulls from.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from contracts.auth import Principal

FileStatus = Literal["pending", "processing", "completed", "failed"]


class FileData(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Processing state. `status` has no default, so it is always serialized."""

    status: FileStatus
    error: str | None = None
    chunks_done: int = 0
    chunks_total: int = 0


class FileMeta(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    content_type: str
    size: int
    data: dict[str, Any] = {}


class FileRecord(msgspec.Struct, kw_only=True):
    """One uploaded file. Serialized as-is in HTTP replies (Open WebUI's shape)."""

    id: str
    user_id: str
    hash: str
    filename: str
    data: FileData
    meta: FileMeta
    created_at: int
    updated_at: int


class IngestJob(msgspec.Struct, frozen=True, kw_only=True):
    """Published on INGEST_JOBS (work queue): extract, chunk, embed, store one file."""

    file_id: str
    request_id: str = ""


class FileStatusReply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`GET /api/v1/files/{id}/process/status` (and each SSE event of ?stream=true)."""

    status: FileStatus
    error: str | None = None
    chunks_done: int = 0
    chunks_total: int = 0


class DeleteFileRequest(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    file_id: str
