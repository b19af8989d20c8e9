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

log = structlog.get_logger()

POLL_SECONDS = 0.1


@dataclass
class ResolvedItem:
    """One scope item: its display name and the files that may be searched for it."""

    item: ScopeItem
    name: str
    records: list[FileRecord] = field(default_factory=list)


class ScopeResolver:
    def __init__(self, files: FileCatalog, knowledge: KnowledgeStore) -> None:
        self._files = files
        self._knowledge = knowledge

    async def resolve(
        self, principal: Principal, items: list[ScopeItem], wait_seconds: float
    ) -> list[ResolvedItem]:
        """Check every item first (any unreadable one fails the whole query), then wait.

        A `file` item must end up completed: failed → `invalid`, still running at the
        deadline → `conflict`. A collection searches its completed files; its pending
        ones are waited for within the same deadline and left out if still not done,
        and its failed ones are left out (one bad file must not break a collection).
        """
        # All items are read at once; the error reported is the first in scope order, as
        # if they had been checked one after the other.
        checked = await asyncio.gather(
            *(self._check(principal, item) for item in items), return_exceptions=True
        )
        resolved: list[ResolvedItem] = []
        for outcome in checked:
            if isinstance(outcome, BaseException):
                raise outcome
            resolved.append(outcome)
        deadline = time.monotonic() + wait_seconds
        await asyncio.gather(*(self._settle(entry, deadline, wait_seconds) for entry in resolved))
        return resolved

    async def _check(self, principal: Principal, item: ScopeItem) -> ResolvedItem:
        if item.type == "file":
            record = await self._files.get(item.id)
            if record is None or not can_read_file(principal, record):
                raise file_not_found(item.id)
            return ResolvedItem(item, record.meta.name, [record])
        knowledge = await self._knowledge.get(item.id)
        if knowledge is None or not can_read_knowledge(principal, knowledge):
            raise knowledge_not_found(item.id)
        found = await asyncio.gather(*(self._files.get(fid) for fid in knowledge.data.file_ids))
        return ResolvedItem(item, knowledge.name, [r for r in found if r is not None])

    async def _settle(self, entry: ResolvedItem, deadline: float, wait_seconds: float) -> None:
        strict = entry.item.type == "file"
        settled = await asyncio.gather(
            *(self._until_settled(record, deadline) for record in entry.records)
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
            elif strict and status == "failed":
                raise file_failed(record.meta.name, record.id, record.data.error)
            elif strict:
                raise file_not_ready(record.meta.name, record.id, wait_seconds)
            else:
                log.info("collection_file_skipped", file_id=record.id, status=status)
        entry.records = kept

    async def _until_settled(self, record: FileRecord, deadline: float) -> FileRecord | None:
        """The record once completed or failed, or as it is at the deadline (None: deleted)."""
        while record.data.status not in ("completed", "failed"):
            left = deadline - time.monotonic()
            if left <= 0:
                return record
            await asyncio.sleep(min(POLL_SECONDS, left))
            latest = await self._files.get(record.id)
            if latest is None:
                return None
            record = latest
        return record
