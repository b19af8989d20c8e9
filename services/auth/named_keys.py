"""Named API keys: several per user, each with a name, an expiry and a scope.

Buckets (`<prefix>_...`): `named_keys` (`<user id>.<key id>` → NamedKeyRecord, so one
user's keys are one subject filter) and `named_key_hashes` (sha256 of the key →
`<user id>.<key id>`). The index entry is written first and removed last: a key resolves
only while both exist, so a key works once created and stops once deleted.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import msgspec
from nats.js import JetStreamContext

from catalog.buckets import Bucket
from contracts.auth import KeyGrant, NamedKey

_VALID_ID = re.compile(r"^[-_a-zA-Z0-9]+$")
_VALID_HASH = re.compile(r"^[0-9a-f]{64}$")


class NamedKeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A named key as stored: the public fields plus its hash."""

    id: str
    user_id: str
    name: str
    key_hash: str
    key_hint: str
    created_at: int
    expires_at: int | None = None
    models: list[str] | None = None
    collections: list[str] | None = None
    created_ns: int = 0  # orders keys made within one second

    def public(self) -> NamedKey:
        return NamedKey(
            id=self.id,
            name=self.name,
            key_hint=self.key_hint,
            created_at=self.created_at,
            expires_at=self.expires_at,
            models=self.models,
            collections=self.collections,
        )

    def grant(self) -> KeyGrant:
        return KeyGrant(
            id=self.id,
            expires_at=self.expires_at,
            models=None if self.models is None else tuple(self.models),
            collections=None if self.collections is None else tuple(self.collections),
        )

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(NamedKeyRecord).decode


def _name(user_id: str, key_id: str) -> str:
    return f"{user_id}.{key_id}"


@dataclass(frozen=True)
class NamedKeyStore:
    records: Bucket
    hashes: Bucket

    @classmethod
    async def open(cls, js: JetStreamContext, prefix: str, replicas: int) -> NamedKeyStore:
        return cls(
            await Bucket.open(js, f"{prefix}_named_keys", replicas),
            await Bucket.open(js, f"{prefix}_named_key_hashes", replicas),
        )

    async def insert(self, record: NamedKeyRecord) -> None:
        name = _name(record.user_id, record.id)
        await self.hashes.kv.create(record.key_hash, name.encode())
        try:
            await self.records.kv.create(name, _encode(record))
        except BaseException:
            await self.hashes.delete(record.key_hash)
            raise

    async def of_user(self, user_id: str) -> list[NamedKeyRecord]:
        if not _VALID_ID.match(user_id):
            return []
        values = await self.records.latest(f"{user_id}.*")
        found = [_decode(value) for value in values.values()]
        found.sort(key=lambda r: (r.created_ns, r.id))
        return found

    async def get(self, user_id: str, key_id: str) -> NamedKeyRecord | None:
        if not (_VALID_ID.match(user_id) and _VALID_ID.match(key_id)):
            return None
        value = await self.records.get(_name(user_id, key_id))
        return None if value is None else _decode(value)

    async def remove(self, record: NamedKeyRecord) -> None:
        """Unindex first: from then on the key resolves nowhere."""
        await self.hashes.delete(record.key_hash)
        await self.records.delete(_name(record.user_id, record.id))

    async def for_hash(self, key_hash: str) -> NamedKeyRecord | None:
        """The live record of a key, or None (unknown, or deleted meanwhile)."""
        if not _VALID_HASH.match(key_hash):
            return None
        name = await self.hashes.get(key_hash)
        if name is None:
            return None
        value = await self.records.get(name.decode())
        if value is None:
            return None
        record = _decode(value)
        return record if record.key_hash == key_hash else None


def now() -> int:
    return int(time.time())


def now_ns() -> int:
    return time.time_ns()
