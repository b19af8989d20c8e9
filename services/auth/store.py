"""Users, their email index and their API keys in JetStream KV.

Buckets (`<prefix>_...`): `users` (user id → UserRecord), `user_emails` (sha256 of the
lowercased email → user id; KV keys cannot hold every email character), `api_keys`
(sha256 of the key → user id) and `auth_meta` (the first-admin claim, the JWT secret).
Uniqueness comes from `create` (atomic: only one writer gets a key) and every
read-modify-write from `update(last=revision)`, retried when another writer got there first.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from nats.js import JetStreamContext

from catalog.buckets import CAS_ATTEMPTS, Bucket
from common.errors import RagwayError, not_found
from contracts.auth import Principal, Role, User, UserDetail

FIRST_USER_KEY = "first_user"
BUSY = "The user changed concurrently; try again"
_VALID_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")


class UserRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A user as stored: the public fields plus secrets that never leave this service."""

    id: str
    email: str
    name: str
    role: Role
    password_hash: str
    created_at: int
    updated_at: int
    last_active_at: int = 0
    profile_image_url: str = "/user.png"
    api_key_hash: str = ""
    api_key_hint: str = ""
    created_ns: int = 0  # orders signups within one second (created_at is in seconds)
    # the groups the user is a member of: the one place membership is kept
    group_ids: tuple[str, ...] = ()
    # bumped by a password change or a sign-out: tokens issued before carry an older one
    session_stamp: int = 0

    def public(self) -> User:
        return User(
            id=self.id,
            email=self.email,
            name=self.name,
            role=self.role,
            created_at=self.created_at,
            updated_at=self.updated_at,
            last_active_at=self.last_active_at,
            profile_image_url=self.profile_image_url,
            group_ids=self.group_ids,
        )

    def detail(self) -> UserDetail:
        return UserDetail(**msgspec.structs.asdict(self.public()), session_stamp=self.session_stamp)

    def principal(self) -> Principal:
        return Principal(
            id=self.id,
            email=self.email,
            name=self.name,
            role=self.role,
            group_ids=self.group_ids,
            session_stamp=self.session_stamp,
        )


_encode = msgspec.json.Encoder().encode
_decode_user = msgspec.json.Decoder(UserRecord).decode


def now() -> int:
    return int(time.time())


def email_key(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


@dataclass(frozen=True)
class Buckets:
    users: Bucket
    emails: Bucket
    keys: Bucket
    meta: Bucket
    groups: Bucket

    @classmethod
    async def open(cls, js: JetStreamContext, prefix: str, replicas: int) -> Buckets:
        names = ("users", "user_emails", "api_keys", "auth_meta", "groups")
        users, emails, keys, meta, groups = [
            await Bucket.open(js, f"{prefix}_{name}", replicas) for name in names
        ]
        return cls(users, emails, keys, meta, groups)


class UserStore:
    """Every read and write of auth state."""

    def __init__(self, buckets: Buckets) -> None:
        self._b = buckets

    # --- users -----------------------------------------------------------------------

    async def get(self, user_id: str) -> tuple[UserRecord, int] | None:
        """The user and the revision to update against, or None."""
        if not _VALID_KEY.match(user_id):
            return None
        found = await self._b.users.entry(user_id)
        return None if found is None else (_decode_user(found.value), found.revision)

    async def find_by_email(self, email: str) -> UserRecord | None:
        user_id = await _get_text(self._b.emails, email_key(email))
        if user_id is None:
            return None
        found = await self.get(user_id)
        return found[0] if found else None

    async def claim_email(self, email: str, user_id: str) -> bool:
        """Reserve `email` for `user_id`; False when someone already has it."""
        return await self._b.emails.claim(email_key(email), user_id.encode())

    async def release_email(self, email: str, user_id: str) -> None:
        """Free `email` if it still belongs to `user_id`."""
        key = email_key(email)
        found = await self._b.emails.entry(key)
        if found is not None and found.value.decode() == user_id:
            await self._b.emails.delete(key, found.revision)

    async def claim_first_user(self, user_id: str) -> bool:
        """True for exactly one caller ever: the first user, who becomes admin."""
        return await self._b.meta.claim(FIRST_USER_KEY, user_id.encode())

    async def has_first_user(self) -> bool:
        return await self._b.meta.get(FIRST_USER_KEY) is not None

    async def release_first_user(self, user_id: str) -> None:
        """Give the admin claim back when the signup that took it failed."""
        found = await self._b.meta.entry(FIRST_USER_KEY)
        if found is not None and found.value.decode() == user_id:
            await self._b.meta.delete(FIRST_USER_KEY, found.revision)

    async def insert(self, record: UserRecord) -> None:
        await self._b.users.kv.create(record.id, _encode(record))

    async def all(self) -> list[UserRecord]:
        """Every user, in one pass over the bucket's latest values (`Bucket.latest`: nats-py's
        watch may announce the end before values already sent, and list users short)."""
        values = await self._b.users.latest()
        return [_decode_user(value) for value in values.values() if value]

    async def change(
        self, user_id: str, edit: Callable[[UserRecord], UserRecord]
    ) -> tuple[UserRecord, UserRecord]:
        """Apply `edit` with compare-and-set, retrying on races; returns (before, after)."""
        changed = None
        if _VALID_KEY.match(user_id):
            busy = RagwayError("conflict", BUSY)
            changed = await self._b.users.update(user_id, _decode_user, edit, busy)
        if changed is None:
            raise not_found("User not found")
        return changed

    async def remove(self, user_id: str) -> UserRecord:
        """Delete the user, then their email and API key index entries."""
        for _ in range(CAS_ATTEMPTS):
            found = await self.get(user_id)
            if found is None:
                raise not_found("User not found")
            record, revision = found
            if await self._b.users.delete(user_id, revision):
                break
        else:
            raise RagwayError("conflict", BUSY)
        await self.release_email(record.email, user_id)
        if record.api_key_hash:
            await self.unindex_key(record.api_key_hash)
        return record

    # --- API keys ----------------------------------------------------------------------

    async def set_api_key(self, user_id: str, key_hash: str, hint: str) -> str:
        """Make `key_hash` the user's only key; returns the replaced key's hash ("" if none).

        The index entry is written first and the user record second: a key resolves only
        when both agree, so the new key works once this returns and the old one stops.
        """
        await self._b.keys.kv.create(key_hash, user_id.encode())
        try:
            before, _ = await self.change(
                user_id,
                lambda r: msgspec.structs.replace(
                    r, api_key_hash=key_hash, api_key_hint=hint, updated_at=now()
                ),
            )
        except BaseException:
            await self.unindex_key(key_hash)
            raise
        if before.api_key_hash and before.api_key_hash != key_hash:
            await self.unindex_key(before.api_key_hash)
        return before.api_key_hash

    async def clear_api_key(self, user_id: str) -> str:
        """Remove the user's key; returns its hash ("" when there was none)."""
        before, _ = await self.change(
            user_id,
            lambda r: (
                msgspec.structs.replace(r, api_key_hash="", api_key_hint="")
                if r.api_key_hash
                else r
            ),
        )
        if before.api_key_hash:
            await self.unindex_key(before.api_key_hash)
        return before.api_key_hash

    async def user_for_key(self, key_hash: str) -> UserRecord | None:
        if not _VALID_KEY.match(key_hash):
            return None
        user_id = await _get_text(self._b.keys, key_hash)
        if user_id is None:
            return None
        found = await self.get(user_id)
        if found is None or found[0].api_key_hash != key_hash:
            return None  # a stale index entry: the user replaced or dropped this key
        return found[0]

    async def unindex_key(self, key_hash: str) -> None:
        await self._b.keys.delete(key_hash)


async def _get_text(bucket: Bucket, key: str) -> str | None:
    value = await bucket.get(key)
    return None if value is None else value.decode()
