"""Resolve a query's scope on the server side, and wait for files still being ingested.

A caller can never reach chunks of files they may not read, whatever ids they send: a
`file` item must be the caller's own (or the caller an admin); a `collection` item must be
readable by the caller, and then its files are searched whoever owns them (that is what
sharing a collection means).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import structlog

from catalog.files import FileCatalog
from contracts.auth import Principal
from contracts.files import FileRecord
from contracts.retrieval import ScopeItem
from retrieval.access import can_read_file, can_read_knowledge
from retrieval.errors import file_failed, file_not_found, file_not_ready, knowledge_not_found
from retrieval.knowledge_store import KnowledgeStore
from retrieval.known_files import SETTLED, KnownFiles

log = structlog.get_logger()

POLL_SECONDS = 0.1


@dataclass
class ResolvedItem:
    """One scope item: its display name and the files that may be searched for it."""

    item: ScopeItem
    name: str
    records: list[FileRecord] = field(default_factory=list)
    # searched while still being embedded (keyword-searchable, not completed)
    partial: list[FileRecord] = field(default_factory=list)


class ScopeResolver:
    def __init__(self, files: FileCatalog, known: KnownFiles, knowledge: KnowledgeStore) -> None:
        self._files = files
        self._known = known  # settled records, for the check; waiting reads the bucket
        self._knowledge = knowledge

    async def resolve(
        self,
        principal: Principal,
        items: list[ScopeItem],
        wait_seconds: float,
        complete_wait_seconds: float | None = None,
    ) -> list[ResolvedItem]:
        """Check every item first (any unreadable one fails the whole query), then wait.

        A `file` item must end up completed, or keyword-searchable once
        `complete_wait_seconds` (default: `wait_seconds`) have passed, in which case it
        is searched as it is and listed in `partial`: failed → `invalid`, not even
        keyword-searchable at the deadline → `conflict`. A collection searches its
        completed and keyword-searchable files the same way; its pending ones are waited
        for within the same deadline and left out if still not searchable, and its
        failed ones are left out (one bad file must not break a collection).
        """
        # All items are read at once; the error reported is the first in scope order, as
        # if they had been checked one after the other. (One item, the common case, is
        # awaited directly: no task per step on every query's path.)
        if len(items) == 1:
            resolved = [await self._check(principal, items[0])]
        else:
            checked = await asyncio.gather(
                *(self._check(principal, item) for item in items), return_exceptions=True
            )
            resolved = []
            for outcome in checked:
                if isinstance(outcome, BaseException):
                    raise outcome
                resolved.append(outcome)
        now = time.monotonic()
        deadlines = (
            now + wait_seconds,
            now + (wait_seconds if complete_wait_seconds is None else complete_wait_seconds),
        )
        if len(resolved) == 1:
            await self._settle(resolved[0], deadlines, wait_seconds)
        else:
            await asyncio.gather(
                *(self._settle(entry, deadlines, wait_seconds) for entry in resolved)
            )
        return resolved

    async def _check(self, principal: Principal, item: ScopeItem) -> ResolvedItem:
        if item.type == "file":
            record = await self._known.get(item.id)
            if record is None or not can_read_file(principal, record):
                raise file_not_found(item.id)
            return ResolvedItem(item, record.meta.name, [record])
        knowledge = await self._knowledge.get(item.id)
        if knowledge is None or not can_read_knowledge(principal, knowledge):
            raise knowledge_not_found(item.id)
        found = await asyncio.gather(*(self._known.get(fid) for fid in knowledge.data.file_ids))
        return ResolvedItem(item, knowledge.name, [r for r in found if r is not None])

    async def _settle(
        self, entry: ResolvedItem, deadlines: tuple[float, float], wait_seconds: float
    ) -> None:
        strict = entry.item.type == "file"
        settled: list[FileRecord | None]
        if all(record.data.status in SETTLED for record in entry.records):
            settled = list(entry.records)  # nothing to wait for (the common case)
        else:
            settled = await asyncio.gather(
                *(self._until_settled(record, *deadlines) for record in entry.records)
            )
        kept: list[FileRecord] = []
        for original, record in zip(entry.records, settled, strict=True):
            if record is None:  # deleted meanwhile
                if strict:
                    raise file_not_found(original.id)
                continue
            status = record.data.status
            if status == "completed":
                kept.append(record)
            elif status == "processing" and record.data.keyword_searchable:
                kept.append(record)
                entry.partial.append(record)
                log.info(
                    "file_searched_partially",
                    file_id=record.id,
                    chunks_embedded=record.data.chunks_done,
                    chunks_total=record.data.chunks_total,
                )
            elif strict and status == "failed":
                raise file_failed(record.meta.name, record.id, record.data.error)
            elif strict:
                raise file_not_ready(record.meta.name, record.id, wait_seconds)
            else:
                log.info("collection_file_skipped", file_id=record.id, status=status)
        entry.records = kept

    async def _until_settled(
        self, record: FileRecord, deadline: float, partial_deadline: float
    ) -> FileRecord | None:
        """The record once completed or failed, or as it is at its deadline (None: deleted);
        a keyword-searchable record's deadline is `partial_deadline`."""
        while record.data.status not in SETTLED:
            bound = partial_deadline if record.data.keyword_searchable else deadline
            left = bound - time.monotonic()
            if left <= 0:
                return record
            await asyncio.sleep(min(POLL_SECONDS, left))
            latest = await self._files.get(record.id)
            if latest is None:
                return None
            record = latest
        return record
