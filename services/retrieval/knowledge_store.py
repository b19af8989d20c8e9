"""Knowledge collections in JetStream KV (`<prefix>_knowledge`), changed with compare-and-set."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from catalog.buckets import ensure_kv, kv_latest
from common.errors import RagwayError
from contracts.knowledge import Knowledge

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Knowledge).decode

CAS_ATTEMPTS = 20


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

    def __init__(self, js: JetStreamContext, bucket: str, kv: KeyValue) -> None:
        self._js = js
        self._bucket = bucket
        self._kv = kv

    @classmethod
    async def open(
        cls, js: JetStreamContext, prefix: str = "ragway", replicas: int = 1
    ) -> KnowledgeStore:
        bucket = f"{prefix}_knowledge"
        return cls(js, bucket, await ensure_kv(js, bucket, replicas))

    async def create(self, knowledge: Knowledge) -> None:
        await self._kv.create(knowledge.id, _encode(knowledge))

    async def get(self, knowledge_id: str) -> Knowledge | None:
        if not valid_key(knowledge_id):
            return None
        try:
            entry = await self._kv.get(knowledge_id)
        except KeyNotFoundError:
            return None
        return _decode(entry.value) if entry.value else None

    async def update(
        self, knowledge_id: str, change: Callable[[Knowledge], Knowledge | None]
    ) -> Knowledge | None:
        """Apply `change` atomically; it may raise, or return None to leave things as they are.

        Returns the stored value (None when the collection does not exist).
        """
        for _ in range(CAS_ATTEMPTS):
            try:
                entry = await self._kv.get(knowledge_id)
            except KeyNotFoundError:
                return None
            if not entry.value:
                return None
            current = _decode(entry.value)
            updated = change(current)
            if updated is None:
                return current
            updated.updated_at = now()
            try:
                await self._kv.update(knowledge_id, _encode(updated), last=entry.revision)
                return updated
            except KeyWrongLastSequenceError:
                await asyncio.sleep(0.005)
        raise RagwayError("unavailable", "Knowledge is too busy to update; try again")

    async def delete(self, knowledge_id: str) -> None:
        with contextlib.suppress(KeyNotFoundError):
            await self._kv.purge(knowledge_id)

    async def list_all(self) -> list[Knowledge]:
        """Every collection, read in one pass over the bucket (not a read per collection)."""
        values = await kv_latest(self._js, self._bucket)
        return [_decode(value) for value in values.values() if value]
