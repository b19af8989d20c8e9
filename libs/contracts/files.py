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
    """Processing state. `status` has no default, so it is always serialized.

    Ingestion is progressive: every chunk is first stored with its text and BM25 vector
    (`keyword_searchable`), then dense vectors are added batch by batch (`chunks_done` of
    `chunks_total`); the file is `completed` once every chunk has its dense vector.
    """

    status: FileStatus
    error: str | None = None
    chunks_done: int = 0
    chunks_total: int = 0
    keyword_searchable: bool = False
    # Dense embedding progress per chunk range ("first index" -> chunks embedded in it),
    # so a redelivered range job counts its chunks once; emptied when completed.
    dense_ranges: dict[str, int] = {}


class FileMeta(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`edited`: the extracted text was replaced (`/data/content/update`); workers index
    that text instead of extracting the original bytes again."""

    name: str
    content_type: str
    size: int
    data: dict[str, Any] = {}
    edited: bool = False


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
    """Published on INGEST_JOBS (work queue): extract, chunk, embed, store one file.

    Without a range (`stop` 0) the job indexes the whole file for keyword search, then
    embeds it, or hands ranges of a large file's chunks out as jobs of their own; with
    one it embeds chunks `start` to `stop` (exclusive) of a keyword-searchable file.
    """

    file_id: str
    request_id: str = ""
    start: int = 0
    stop: int = 0


class FileStatusReply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`GET /api/v1/files/{id}/process/status` (and each SSE event of ?stream=true)."""

    status: FileStatus
    error: str | None = None
    chunks_done: int = 0
    chunks_total: int = 0
    keyword_searchable: bool = False


class DeleteFileRequest(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    file_id: str


class UserDataPurge(msgspec.Struct, frozen=True, kw_only=True):
    """Delete everything retrieval keeps for one user (an admin's request)."""

    principal: Principal
    user_id: str


class UserDataPurged(msgspec.Struct, frozen=True, kw_only=True):
    files: int = 0
    collections: int = 0
