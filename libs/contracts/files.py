"""Files: the record clients see (Open WebUI's file object), and ingestion jobs.

Records live in JetStream KV (see `catalog`), blobs in the JetStream object store, jobs
on a work-queue stream that every ingestion worker pulls from.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from contracts.auth import Principal

FileStatus = Literal["pending", "processing", "completed", "failed"]
# Where a file's processing is (`/process/status`): queued, then the keyword phase
# (extracting the text, chunking it, indexing every chunk with its BM25 vector), then the
# dense phase (embedding), done. A cancelled file is `failed` (Open WebUI's statuses) at
# stage `cancelled`, so every client that waits for completed/failed stops waiting.
Stage = Literal[
    "queued", "extracting", "chunking", "indexing", "embedding", "done", "failed", "cancelled"
]


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
    # set by the workers while processing (and `cancelled` once stopped); absent: derived
    stage: Stage | None = None
    # a cancel asked of a running job: it stops at its next stage boundary
    cancel_reason: str | None = None
    # which processing run of the file this is: a retry or re-index starts the next one,
    # so a job of an earlier run (still queued, or still running) leaves the file alone
    run: int = 0


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
    run: int = 0  # the file record's `run` this job belongs to


class FileStatusReply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`GET /api/v1/files/{id}/process/status` (and each SSE event of ?stream=true)."""

    status: FileStatus
    stage: Stage
    error: str | None = None
    chunks_done: int = 0
    chunks_total: int = 0
    keyword_searchable: bool = False
    # a cancel was asked; the job stops at its next stage boundary
    cancel_requested: bool = False


def stage_of(data: FileData) -> Stage:
    """The stage the record says, or what its status implies (records of older workers)."""
    if data.status == "completed":
        return "done"
    if data.status == "failed":
        return "cancelled" if data.stage == "cancelled" else "failed"
    if data.status == "pending":
        return "queued"
    if data.stage is not None:
        return data.stage
    return "embedding" if data.keyword_searchable else "extracting"


DeadLetterKind = Literal["failed", "exhausted"]


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A job that failed for good (`failed`: the file cannot be processed) or ran out of
    deliveries (`exhausted`), kept in the dead-letter stream, one per file, until the
    file is retried or deleted."""

    file_id: str
    user_id: str = ""
    filename: str = ""
    reason: str
    kind: DeadLetterKind
    deliveries: int = 0
    job: IngestJob
    failed_at: float = 0.0


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
