"""Settled file records (completed or failed), kept current by a watch on the files bucket.

Every query checks the record of each file in its scope; a KV read costs a round trip and
~0.5 ms of CPU here, ten files ~2.3 ms, on the cores the query embedding needs. A settled
record hardly changes, so the scope check reads it here instead. Anything else is read
from the bucket: a file this mirror has not seen yet (created a moment ago) or one still
being ingested, and every file while the watch is not running. A deletion reaches the
mirror with the watch (milliseconds later); a file deleted through this service leaves it
at once (`forget`), and its vectors are deleted before its record in any case.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog

from catalog.files import FileCatalog
from contracts.files import FileRecord

log = structlog.get_logger()

SETTLED = ("completed", "failed")
RETRY_SECONDS = 1.0  # before watching again after the watch failed or ended


@dataclass
class UnknownCache:
    """The ids of one set of file ids that the mirror did not hold, as of a generation."""

    ids: frozenset[str] = frozenset()
    generation: int = -1
    unknown: frozenset[str] = frozenset()


class KnownFiles:
    def __init__(self, files: FileCatalog) -> None:
        self._files = files
        # every record the watch delivered, settled or not: listings may be a few
        # milliseconds behind the bucket; a scope check (`get`) trusts only settled ones
        self._latest: dict[str, FileRecord] = {}
        # the mirrored ids not completed (pending, processing, failed): a collection's
        # scope check looks at those of its files (and at the ones not mirrored) alone
        self._unfinished: set[str] = set()
        self._generation = 0  # changes whenever an id enters or leaves the mirror
        self._live = False
        self._ready = asyncio.Event()

    async def get(self, file_id: str) -> FileRecord | None:
        """The file's record as `FileCatalog.get` gives it (None: no such file)."""
        record = self._settled(file_id)
        return record if record is not None else await self._files.get(file_id)

    def _settled(self, file_id: str) -> FileRecord | None:
        record = self._latest.get(file_id) if self._live else None
        return record if record is not None and record.data.status in SETTLED else None

    async def listing(self, file_ids: list[str]) -> list[FileRecord]:
        """The records of these files that exist, in order, as of the watch's last change.

        A knowledge collection's reply lists every file it holds; reading each from the
        bucket made adding the n-th file cost n round trips (5,000 files: 12.5M reads)."""
        if not self._live:
            return await self._files.get_many(file_ids)
        found: list[FileRecord] = []
        for file_id in file_ids:
            record = self._latest.get(file_id)
            if record is None:  # created a moment ago: the watch has not delivered it yet
                record = await self._files.get(file_id)
            if record is not None:
                found.append(record)
        return found

    def forget(self, file_id: str) -> None:
        self._drop(file_id)

    def needs_look(self, file_ids: frozenset[str], mirrored: UnknownCache) -> set[str]:
        """Which of `file_ids` a scope check must look at one by one: every one while the
        mirror is down, else those not completed or not mirrored (usually none).

        `mirrored` keeps the ids not mirrored for one set of ids between calls (recomputing
        them walks every id: ~4 ms for 50,000 files)."""
        if not self._live:
            return set(file_ids)
        if mirrored.ids is not file_ids or mirrored.generation != self._generation:
            mirrored.ids = file_ids
            mirrored.generation = self._generation
            mirrored.unknown = file_ids.difference(self._latest)
        return (self._unfinished & file_ids) | mirrored.unknown

    def _put(self, file_id: str, record: FileRecord) -> None:
        if file_id not in self._latest:
            self._generation += 1
        self._latest[file_id] = record
        if record.data.status == "completed":
            self._unfinished.discard(file_id)
        else:
            self._unfinished.add(file_id)

    def _drop(self, file_id: str) -> None:
        if self._latest.pop(file_id, None) is not None:
            self._generation += 1
        self._unfinished.discard(file_id)

    def __contains__(self, file_id: str) -> bool:
        return self._settled(file_id) is not None

    async def follow(self) -> None:
        """Mirror the bucket until cancelled; while the watch is down, reads go to the bucket."""
        while True:
            try:
                async for change in self._files.follow():
                    if change is None:  # the records that existed at the start are in
                        self._live = True
                        self._ready.set()
                        continue
                    file_id, record = change
                    if record is not None:
                        self._put(file_id, record)
                    else:
                        self._drop(file_id)
            except Exception:
                log.warning("file_watch_failed", retry_seconds=RETRY_SECONDS, exc_info=True)
            finally:
                self._live = False
                self._latest.clear()
                self._unfinished.clear()
                self._generation += 1
                self._ready.set()  # start serving (from the bucket) rather than wait
            await asyncio.sleep(RETRY_SECONDS)

    async def ready(self) -> None:
        await self._ready.wait()


@asynccontextmanager
async def known_files(files: FileCatalog) -> AsyncIterator[KnownFiles]:
    """A mirror of the settled records, followed until exit."""
    known = KnownFiles(files)
    task = asyncio.create_task(known.follow())
    try:
        await known.ready()
        yield known
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
