"""Resolve a query's scope on the server side, and wait for files still being ingested.

A caller can never reach chunks of files they may not read, whatever ids they send: a
`file` item must be the caller's own (or the caller an admin); a `collection` item must be
readable by the caller, and then its files are searched whoever owns them (that is what
sharing a collection means).

A collection is searched by its id, which every chunk of its files carries in the
`collections` payload (`memberships.py`), so a query costs the same for 5 files or 50,000:
only the files not completed (pending, processing, failed: usually none) are looked at
one by one, and those that may not be searched yet are excluded by id. Every hit is then
checked against the collection's file list (`ResolvedItem.admits`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import structlog

from catalog.files import FileCatalog
from contracts.auth import Principal
from contracts.files import FileRecord
from contracts.knowledge import Knowledge
from contracts.retrieval import ScopeItem
from retrieval.access import can_read_file, can_read_knowledge
from retrieval.errors import file_failed, file_not_found, file_not_ready, knowledge_not_found
from retrieval.knowledge_store import KnowledgeStore
from retrieval.known_files import SETTLED, KnownFiles, UnknownCache
from retrieval.memberships import Memberships

log = structlog.get_logger()

POLL_SECONDS = 0.1
MAX_CACHED = 4096  # collections whose not-mirrored files are kept between queries


@dataclass
class ResolvedItem:
    """One scope item: its display name and the files that may be searched for it.

    A file item searches `records`. A collection item searches every chunk tagged with
    `collection` except those of `excluded`; `records` then holds only the files that had
    to be looked at one by one (not completed), those kept for search."""

    item: ScopeItem
    name: str
    records: list[FileRecord] = field(default_factory=list)
    # searched while still being embedded (keyword-searchable, not completed)
    partial: list[FileRecord] = field(default_factory=list)
    collection: str | None = None
    members: frozenset[str] = frozenset()  # the collection's files
    order: list[str] = field(default_factory=list)  # the same, in the collection's order
    excluded: set[str] = field(default_factory=set)

    def admits(self, file_id: str) -> bool:
        """Whether a hit of this file belongs to this item's scope."""
        if self.collection is None:
            return any(record.id == file_id for record in self.records)
        return file_id in self.members and file_id not in self.excluded

    def file_ids(self) -> list[str]:
        """The searched files in scope order."""
        if self.collection is None:
            return [record.id for record in self.records]
        return [fid for fid in self.order if fid not in self.excluded]


class ScopeResolver:
    def __init__(
        self,
        files: FileCatalog,
        known: KnownFiles,
        knowledge: KnowledgeStore,
        memberships: Memberships,
    ) -> None:
        self._files = files
        self._known = known  # settled records, for the check; waiting reads the bucket
        self._knowledge = knowledge
        self._memberships = memberships
        self._unknown: dict[str, UnknownCache] = {}  # per collection id

    async def _collection(self, knowledge_id: str) -> tuple[Knowledge | None, frozenset[str]]:
        """The collection and its files: from the mirror when it follows the bucket (a
        collection made a moment ago elsewhere is read from the bucket)."""
        if self._memberships.live:
            mirrored = self._memberships.get(knowledge_id)
            if mirrored is not None:
                return mirrored, self._memberships.file_ids(knowledge_id)
        knowledge = await self._knowledge.get(knowledge_id)
        return knowledge, frozenset(knowledge.data.file_ids) if knowledge else frozenset()

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
        knowledge, members = await self._collection(item.id)
        if knowledge is None or not can_read_knowledge(principal, knowledge):
            raise knowledge_not_found(item.id)
        cache = self._unknown.setdefault(item.id, UnknownCache())
        if len(self._unknown) > MAX_CACHED:
            self._unknown.clear()
        look = self._known.needs_look(members, cache)
        found = await asyncio.gather(*(self._known.get(fid) for fid in look)) if look else []
        return ResolvedItem(
            item,
            knowledge.name,
            [r for r in found if r is not None],
            collection=item.id,
            members=members,
            order=knowledge.data.file_ids,
            excluded={fid for fid, r in zip(look, found, strict=True) if r is None},
        )

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
                entry.excluded.add(original.id)
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
                entry.excluded.add(record.id)
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
