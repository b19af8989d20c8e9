"""Steering ingestion: cancel a file's processing, retry failed files, list dead letters.

- Cancel: a queued file is marked cancelled at once (its job, when a worker takes it,
  finds a finished file and skips it); a running one gets `cancel_reason` in its record,
  which the worker reads at its next stage boundary: it deletes what it wrote, then marks
  the file cancelled. Cancelled is Open WebUI's `failed` at stage `cancelled`, with the
  reason as its error, so every client waiting for completed/failed stops waiting.
- Retry: `reindex.reprocess` (a new run, old vectors deleted, the job queued, the dead
  letter dropped). A file that is queued or running already is answered as it is,
  nothing queued twice; a completed one is a 409.
- Dead letters (`catalog.dead_letters`): written by the workers, listed newest first for
  admins, retried from there one by one or all at once (bounded).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, TypeVar

import msgspec
import structlog
from aiohttp import web

from catalog.dead_letters import DeadLetters
from common.errors import RagwayError
from contracts.files import DeadLetterKind, FileData, FileRecord, IngestJob, Stage, stage_of
from gateway.bodies import json_value, parse
from gateway.paging import page_of
from gateway.reindex import reprocess
from gateway.routes_files import readable_record, status_of
from gateway.state import (
    BUS,
    CATALOG,
    DEAD_LETTERS,
    SETTINGS,
    Access,
    Route,
    add_route_table,
    principal_of,
)

log = structlog.get_logger()
T = TypeVar("T")

FAILED_PAGE_SIZE = 50
MAX_RETRY_AT_ONCE = 1000


class CancelForm(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of `files/{id}/process/cancel` (optional): why, shown as the file's error."""

    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class RetryAllForm(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of `files/process/retry` (optional). Without `file_ids`: the oldest `limit`
    dead letters (of `kind` only, when given); with them: those failed files."""

    file_ids: Annotated[list[str], msgspec.Meta(max_length=MAX_RETRY_AT_ONCE)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_RETRY_AT_ONCE)] = 100
    kind: DeadLetterKind | None = None


class RetryAllReply(msgspec.Struct, kw_only=True):
    """How many files were queued again, how many were not (gone, or no longer failed),
    and how many dead letters are left."""

    retried: int
    skipped: int
    remaining: int
    file_ids: list[str]


class FailedJob(msgspec.Struct, kw_only=True):
    """A dead letter, with its file's current status."""

    file_id: str
    user_id: str
    filename: str
    reason: str
    kind: DeadLetterKind
    deliveries: int
    failed_at: float
    job: IngestJob
    status: str
    stage: Stage


class FailedPage(msgspec.Struct, kw_only=True):
    items: list[FailedJob]
    total: int


# --- cancel ------------------------------------------------------------------------------


async def cancel_processing(request: web.Request) -> web.Response:
    record = await readable_record(request)
    form = await _optional_body(request, CancelForm)
    principal = principal_of(request)
    who = "its owner" if principal.id == record.user_id else "an administrator"
    message = f"Processing was cancelled by {who}" + (f": {form.reason}" if form.reason else "")

    def cancelled(current: FileRecord) -> FileRecord:
        data = current.data
        if data.status == "pending":  # no worker has it yet: cancelled now
            current.data = FileData(status="failed", stage="cancelled", error=message, run=data.run)
        elif data.status == "processing":
            if data.cancel_reason is None:  # the worker stops at its next stage boundary
                current.data = msgspec.structs.replace(data, cancel_reason=message)
        elif stage_of(data) != "cancelled":
            raise RagwayError(
                "conflict",
                f"File {current.meta.name!r} is already {data.status}: nothing to cancel",
            )
        return current

    updated = await request.app[CATALOG].update(record.id, cancelled)
    log.info("file_cancel_requested", file_id=record.id, status=updated.data.status)
    return json_value(status_of(updated))


# --- retry -------------------------------------------------------------------------------


async def retry_processing(request: web.Request) -> web.Response:
    record = await readable_record(request)
    status = record.data.status
    if status == "completed":
        raise RagwayError(
            "conflict",
            f"File {record.meta.name!r} is already processed "
            "(to index it again: POST /api/v1/knowledge/{id}/file/update)",
        )
    if status == "failed":
        record = await _retry(request, record) or record
    return json_value(status_of(record))


async def _retry(request: web.Request, record: FileRecord) -> FileRecord | None:
    """Queue a failed file again; None when another request just did (nothing queued)."""
    try:
        queued = await reprocess(request, record)
    except RagwayError as exc:
        if exc.code != "conflict":
            raise
        return await request.app[CATALOG].get(record.id)
    log.info("file_retry_queued", file_id=record.id, run=queued.data.run)
    return queued


async def retry_all(request: web.Request) -> web.Response:
    """Admin: retry dead-lettered (or named) failed files, at most `limit` at once."""
    form = await _optional_body(request, RetryAllForm)
    app = request.app
    dead, catalog = app[DEAD_LETTERS], app[CATALOG]
    if form.file_ids is not None:
        targets = list(dict.fromkeys(form.file_ids))
    else:
        letters = await dead.all()
        targets = [
            letter.file_id for letter in letters if form.kind is None or letter.kind == form.kind
        ][: form.limit]
    retried: list[str] = []
    for file_id in targets:
        record = await catalog.get(file_id)
        if record is None or record.data.status != "failed":
            if record is None or record.data.status == "completed":
                await dead.remove(file_id)  # nothing left to retry
            continue
        queued = await _retry(request, record)
        if queued is not None and queued.data.run > record.data.run:
            retried.append(file_id)
    reply = RetryAllReply(
        retried=len(retried),
        skipped=len(targets) - len(retried),
        remaining=await dead.count(),
        file_ids=retried,
    )
    log.info("files_retried", retried=reply.retried, skipped=reply.skipped)
    return json_value(reply)


# --- dead letters ------------------------------------------------------------------------


async def list_failed(request: web.Request) -> web.Response:
    """Admin: dead letters, newest first, `FAILED_PAGE_SIZE` a page (`?page=`, from 1).

    Letters whose file is gone or no longer failed (retried elsewhere, re-indexed) are
    dropped from the stream as they are met."""
    app = request.app
    dead, catalog = app[DEAD_LETTERS], app[CATALOG]
    page = page_of(request) or 1
    letters = list(reversed(await dead.all()))
    start = (page - 1) * FAILED_PAGE_SIZE
    items: list[FailedJob] = []
    dropped = 0
    for letter in letters[start : start + FAILED_PAGE_SIZE]:
        record = await catalog.get(letter.file_id)
        if record is None or record.data.status != "failed":
            await dead.remove(letter.file_id)
            dropped += 1
            continue
        items.append(
            FailedJob(
                file_id=letter.file_id,
                user_id=letter.user_id,
                filename=letter.filename,
                reason=letter.reason,
                kind=letter.kind,
                deliveries=letter.deliveries,
                failed_at=letter.failed_at,
                job=letter.job,
                status=record.data.status,
                stage=stage_of(record.data),
            )
        )
    return json_value(FailedPage(items=items, total=len(letters) - dropped))


# --- wiring ------------------------------------------------------------------------------


async def _optional_body(request: web.Request, form: type[T]) -> T:
    body = await request.read()
    return parse(body, form) if body.strip() else parse(b"{}", form)


async def _dead_letters(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    js = app[BUS].nc.jetstream(timeout=settings.request_timeout_seconds)
    app[DEAD_LETTERS] = await DeadLetters.open(
        js, settings.dead_letter_stream, settings.dead_letter_subjects, settings.kv_replicas
    )
    yield


def add_routes(app: web.Application, access: dict[str, Access]) -> None:
    user: list[Route] = [
        ("POST", "/api/v1/files/{file_id}/process/cancel", "files_cancel", cancel_processing),
        ("POST", "/api/v1/files/{file_id}/process/retry", "files_retry", retry_processing),
    ]
    admin: list[Route] = [
        ("POST", "/api/v1/files/process/retry", "files_retry_all", retry_all),
        ("GET", "/api/v1/files/process/failed", "files_failed", list_failed),
    ]
    add_route_table(app, access, user, "user")
    add_route_table(app, access, admin, "admin")
    app.cleanup_ctx.append(_dead_letters)
