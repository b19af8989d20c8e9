"""The named API key endpoints: create (the secret once), list (records), delete."""

from __future__ import annotations

import uuid

from structlog.typing import FilteringBoundLogger

from auth.errors import conflict
from auth.handlers import hash_api_key, key_hint, new_api_key
from auth.named_keys import NamedKeyRecord, NamedKeyStore, now, now_ns
from auth.store import UserStore
from auth.validation import clean_name
from common.bus import Bus
from common.errors import invalid, not_found
from common.service import ServiceHost
from contracts import subjects
from contracts.auth import (
    AuthEvent,
    NamedKeyCreate,
    NamedKeyCreated,
    NamedKeyRef,
    NamedKeys,
    NamedKeysRequest,
    Ok,
)

MAX_KEYS_PER_USER = 100


class NamedKeyHandlers:
    def __init__(
        self, *, store: NamedKeyStore, users: UserStore, bus: Bus, log: FilteringBoundLogger
    ) -> None:
        self._store = store
        self._users = users
        self._bus = bus
        self._log = log

    async def serve(self, host: ServiceHost) -> None:
        """Answer the named-key endpoints on `host`."""
        await host.serve(subjects.AUTH_NAMED_KEY_CREATE, self.create)
        await host.serve(subjects.AUTH_NAMED_KEYS_LIST, self.list)
        await host.serve(subjects.AUTH_NAMED_KEY_DELETE, self.delete)

    async def create(self, request: NamedKeyCreate) -> NamedKeyCreated:
        form = request.form
        name = clean_name(form.name)
        created = now()
        if form.expires_at is not None and form.expires_at <= created:
            raise invalid("expires_at must be in the future (epoch seconds)")
        if await self._users.get(request.user_id) is None:
            raise not_found("User not found")
        if len(await self._store.of_user(request.user_id)) >= MAX_KEYS_PER_USER:
            raise conflict(f"At most {MAX_KEYS_PER_USER} named API keys per user")
        key = new_api_key()
        created_ns = now_ns()
        record = NamedKeyRecord(
            created_ns=created_ns,
            id=uuid.uuid4().hex,
            user_id=request.user_id,
            name=name,
            key_hash=hash_api_key(key),
            key_hint=key_hint(key),
            created_at=created,
            expires_at=form.expires_at,
            models=None if form.models is None else list(dict.fromkeys(form.models)),
            collections=None if form.collections is None else list(dict.fromkeys(form.collections)),
        )
        await self._store.insert(record)
        self._log.info(
            "named_key_created",
            user_id=record.user_id,
            key_id=record.id,
            scoped=record.grant().scoped,
        )
        public = record.public()
        return NamedKeyCreated(
            id=public.id,
            name=public.name,
            api_key=key,
            key_hint=public.key_hint,
            created_at=public.created_at,
            expires_at=public.expires_at,
            models=public.models,
            collections=public.collections,
        )

    async def list(self, request: NamedKeysRequest) -> NamedKeys:
        return NamedKeys(keys=[r.public() for r in await self._store.of_user(request.user_id)])

    async def delete(self, ref: NamedKeyRef) -> Ok:
        record = await self._store.get(ref.user_id, ref.key_id)
        if record is None:
            raise not_found("API key not found")
        await self._store.remove(record)
        self._log.info("named_key_revoked", user_id=ref.user_id, key_id=ref.key_id)
        await self._bus.publish(
            subjects.AUTH_EVENTS,
            AuthEvent(kind="key_revoked", user_id=ref.user_id, key_hash=record.key_hash),
        )
        return Ok()
