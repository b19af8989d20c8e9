"""Knowledge collections in JetStream KV (`<prefix>_knowledge`), changed with compare-and-set."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

import msgspec
import structlog
from nats.js import JetStreamContext

from catalog.buckets import Bucket
from common import access
from common.errors import RagwayError
from contracts.knowledge import Knowledge

log = structlog.get_logger()

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Knowledge).decode


def now() -> int:
    return int(time.time())


def valid_key(key: str) -> bool:
    return (
        bool(key)
        and len(key) <= 128
        and key.isascii()
        and all(c.isalnum() or c in "-_" for c in key)
    )


class KnowledgeStore:
    """One KV entry per collection, keyed by its id."""

    def __init__(self, bucket: Bucket) -> None:
        self._bucket = bucket

    @classmethod
    async def open(
        cls, js: JetStreamContext, prefix: str = "ragway", replicas: int = 1
    ) -> KnowledgeStore:
        return cls(await Bucket.open(js, f"{prefix}_knowledge", replicas))

    async def create(self, knowledge: Knowledge) -> None:
        await self._bucket.kv.create(knowledge.id, _encode(knowledge))

    async def put(self, knowledge: Knowledge) -> None:
        """Write a collection as it is, whatever is stored (bulk imports and benchmarks)."""
        await self._bucket.put(knowledge.id, _encode(knowledge))

    async def get(self, knowledge_id: str) -> Knowledge | None:
        if not valid_key(knowledge_id):
            return None
        value = await self._bucket.get(knowledge_id)
        return None if value is None else _decode(value)

    async def update(
        self, knowledge_id: str, change: Callable[[Knowledge], Knowledge | None]
    ) -> Knowledge | None:
        """Apply `change` atomically; it may raise, or return None to leave things as they are.

        Returns the stored value (None when the collection does not exist).
        """

        def stamped(current: Knowledge) -> Knowledge | None:
            updated = change(current)
            if updated is not None:
                updated.updated_at = now()
            return updated

        busy = RagwayError("unavailable", "Knowledge is too busy to update; try again")
        changed = await self._bucket.update(knowledge_id, _decode, stamped, busy)
        return None if changed is None else changed[1]

    async def delete(self, knowledge_id: str) -> None:
        await self._bucket.purge(knowledge_id)

    async def follow(self) -> AsyncIterator[tuple[str, Knowledge | None] | None]:
        """Every collection, one None once those are in, then every change (None: deleted)."""
        async with contextlib.aclosing(self._bucket.follow()) as changes:
            async for change in changes:
                if change is None:
                    yield None
                else:
                    key, value = change
                    yield key, None if value is None else _decode(value)

    async def list_all(self) -> list[Knowledge]:
        """Every collection, read in one pass over the bucket (not a read per collection)."""
        values = await self._bucket.latest()
        return [_decode(value) for value in values.values() if value]

    async def migrate_to_grants(self) -> int:
        """Give every collection stored before grants existed the grants its legacy
        `access_control` meant (`null`: public read; `{}`: private), explicitly and once.

        Without this a collection stored with `null` would still read as public through
        the fallback in `common.access.stored_grants`; written out, the meaning is visible
        in every reply and survives any later update. Idempotent, safe with several
        instances starting at once (compare-and-set). Returns how many were migrated.
        """
        migrated = 0
        busy = RagwayError("unavailable", "Knowledge is too busy to migrate; try again")
        for knowledge in await self.list_all():
            if knowledge.access_grants is not None:
                continue
            grants = access.grants_from_control(knowledge.access_control)

            def change(current: Knowledge) -> Knowledge | None:
                if current.access_grants is not None:
                    return None  # another instance got there first
                current.access_grants = access.grants_from_control(current.access_control)
                return current

            # not `update`: a migration is not a change of the collection (no new updated_at)
            changed = await self._bucket.update(knowledge.id, _decode, change, busy)
            if changed is None:
                continue  # deleted meanwhile
            migrated += 1
            log.warning(
                "knowledge_access_migrated",
                knowledge_id=knowledge.id,
                access_control=msgspec.to_builtins(knowledge.access_control),
                access_grants=msgspec.to_builtins(grants),
            )
        if migrated:
            log.warning("knowledge_access_migration_done", migrated=migrated)
        return migrated
