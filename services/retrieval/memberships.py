"""Which knowledge collections each file is in: mirrored from the knowledge bucket, and
written onto the file's chunks (the `collections` payload) so that a collection is
searched by one indexed condition instead of a list of its file ids.

The bucket is the truth; the chunks follow it:
- a change made through this service is applied here and written to the chunks before
  it is answered (a file added to a collection is searchable through it at once, one
  removed is not);
- a change seen on the watch (another instance's, or this one's own echo) rewrites the
  files whose membership it changed;
- chunk writes (ingestion, copies) carry the file's collections (`collections_of`);
- at start, the files whose chunks lack a collection they are in get it (stores made
  before this payload existed, or a write cut short by a crash).
A search still checks every hit against the collection's file list (`scope.py`), so a
payload that lags the bucket can never show a file outside the collection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import structlog

from contracts.auth import Principal
from contracts.knowledge import Knowledge
from retrieval.knowledge_store import KnowledgeStore
from retrieval.visibility import VisibilityIndex
from vectorstore.store import VectorStore

log = structlog.get_logger()

RETRY_SECONDS = 1.0  # before watching again after the watch failed or ended
NO_FILES: frozenset[str] = frozenset()


class Memberships:
    def __init__(self, store: VectorStore, knowledge: KnowledgeStore) -> None:
        self._store = store
        self._knowledge = knowledge
        self._collections: dict[str, Knowledge] = {}
        self._visibility = VisibilityIndex()  # who might see which (listings)
        self._files: dict[str, frozenset[str]] = {}  # collection id -> its file ids
        self._of_file: defaultdict[str, set[str]] = defaultdict(set)  # file -> collections
        self._live = False
        self._synced = False  # the chunks were checked against the bucket once
        self._ready = asyncio.Event()
        # one payload write at a time: a write computes a file's collections and stores
        # them, and two interleaved writes could store the older answer last
        self._lock = asyncio.Lock()
        self._writes: set[asyncio.Future[None]] = set()

    @property
    def live(self) -> bool:
        """Whether the mirror follows the bucket now (else callers read the bucket)."""
        return self._live

    def get(self, knowledge_id: str) -> Knowledge | None:
        return self._collections.get(knowledge_id)

    def file_ids(self, knowledge_id: str) -> frozenset[str]:
        """The collection's files as a set (built once per change of the collection)."""
        return self._files.get(knowledge_id, NO_FILES)

    def collections_of(self, file_id: str) -> list[str]:
        return sorted(self._of_file.get(file_id, ()))

    def candidates(self, principal: Principal) -> list[Knowledge]:
        """The mirrored collections `principal` might see (`VisibilityIndex`): a listing
        checks these alone instead of every collection."""
        found = (self._collections.get(k) for k in self._visibility.candidates(principal))
        return [knowledge for knowledge in found if knowledge is not None]

    def apply(self, knowledge: Knowledge) -> set[str]:
        """Take a collection's new value; the files whose membership changed."""
        before = self._files.get(knowledge.id, NO_FILES)
        after = frozenset(knowledge.data.file_ids)
        self._collections[knowledge.id] = knowledge
        self._visibility.put(knowledge)
        if after == before:
            return set()
        self._files[knowledge.id] = after
        for file_id in before - after:
            self._leave(file_id, knowledge.id)
        for file_id in after - before:
            self._of_file[file_id].add(knowledge.id)
        return set(before ^ after)

    def drop(self, knowledge_id: str) -> set[str]:
        """Forget a deleted collection; the files that were in it."""
        self._collections.pop(knowledge_id, None)
        self._visibility.drop(knowledge_id)
        before = self._files.pop(knowledge_id, NO_FILES)
        for file_id in before:
            self._leave(file_id, knowledge_id)
        return set(before)

    def _leave(self, file_id: str, knowledge_id: str) -> None:
        held = self._of_file.get(file_id)
        if held is not None:
            held.discard(knowledge_id)
            if not held:
                del self._of_file[file_id]

    async def changed(self, knowledge: Knowledge | None, knowledge_id: str) -> None:
        """A change this service made to the bucket: mirror it and write the chunks now."""
        files = self.apply(knowledge) if knowledge is not None else self.drop(knowledge_id)
        await self.write(files)

    @asynccontextmanager
    async def writing(self, file_id: str) -> AsyncIterator[list[str]]:
        """The file's collections, for chunks written inside: no payload write of this
        service runs meanwhile (one could store an older answer after them)."""
        async with self._lock:
            yield self.collections_of(file_id)

    async def write(self, file_ids: Iterable[str]) -> None:
        """Store each file's collections on its chunks: one write per distinct set."""
        async with self._lock:
            groups: defaultdict[tuple[str, ...], list[str]] = defaultdict(list)
            for file_id in file_ids:
                groups[tuple(self.collections_of(file_id))].append(file_id)
            for collections, files in groups.items():
                await self._store.set_collections(files, collections)

    def rewrite_later(self, file_ids: Iterable[str]) -> None:
        """`write` in the background (a search found these files' payload behind)."""
        task = asyncio.ensure_future(self.write(set(file_ids)))
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Future[None]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("collection_payload_write_failed", error=str(task.exception()))

    async def drain(self) -> None:
        """Wait for the background writes still running."""
        for write in list(self._writes):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await write

    async def complete(self) -> int:
        """Write the files whose chunks lack a collection they are in; how many groups."""
        groups: defaultdict[tuple[str, ...], list[str]] = defaultdict(list)
        for file_id, held in list(self._of_file.items()):
            groups[tuple(sorted(held))].append(file_id)
        written = 0
        for collections, files in groups.items():
            async with self._lock:
                if await self._store.count_lacking(files, collections):
                    await self._store.set_collections(files, collections)
                    written += 1
        return written

    async def follow(self) -> None:
        """Mirror the bucket until cancelled; while the watch is down, reads go to the bucket."""
        while True:
            seen: set[str] = set()
            # changed while the watch was down (known once it is back): written when all
            # are in; at the first start `complete` checks every file instead
            missed: set[str] = set()
            try:
                async for change in self._knowledge.follow():
                    if change is None:  # every collection that exists now is in
                        for gone in [k for k in self._collections if k not in seen]:
                            missed |= self.drop(gone)
                        if self._synced:
                            await self.write(missed)
                        written = await self.complete()
                        self._synced = True
                        log.info("collection_payloads_checked", rewritten_groups=written)
                        self._live = True
                        self._ready.set()
                        continue
                    knowledge_id, knowledge = change
                    seen.add(knowledge_id)
                    files = self._take(knowledge_id, knowledge)
                    if self._live and files:
                        await self.write(files)
                    else:
                        missed |= files
            except Exception:
                log.warning("knowledge_watch_failed", retry_seconds=RETRY_SECONDS, exc_info=True)
            finally:
                self._live = False
                self._ready.set()  # start serving (from the bucket) rather than wait
            await asyncio.sleep(RETRY_SECONDS)

    def _take(self, knowledge_id: str, knowledge: Knowledge | None) -> set[str]:
        """A watched value; the files whose membership it changed."""
        if knowledge is None:
            return self.drop(knowledge_id)
        current = self._collections.get(knowledge_id)
        if current is not None and knowledge.updated_at < current.updated_at:
            return set()  # an echo older than a change this service applied already
        return self.apply(knowledge)

    async def ready(self) -> None:
        await self._ready.wait()


@asynccontextmanager
async def memberships(store: VectorStore, knowledge: KnowledgeStore) -> AsyncIterator[Memberships]:
    """Collection memberships mirrored (and the chunks' payload checked) until exit."""
    mirror = Memberships(store, knowledge)
    task = asyncio.create_task(mirror.follow())
    try:
        await mirror.ready()
        yield mirror
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await mirror.drain()
