"""Who is calling: API keys and JWTs resolved to a Principal, mostly without NATS.

Keys resolve through auth (AUTH_KEY_RESOLVE) by their SHA-256; JWTs are verified here
with the parameters auth publishes, then the user comes from AUTH_USER_GET. Both
answers are cached briefly, and dropped at once when auth says they went stale
(AUTH_EVENTS) or when the NATS connection reconnects (events may have been missed).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field

import jwt
import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from common.bus import Bus
from common.codec import decode
from common.errors import RagwayError, unauthorized
from contracts import subjects
from contracts.auth import (
    AuthEvent,
    JwtParams,
    JwtParamsRequest,
    KeyResolveRequest,
    Principal,
    UserRef,
)

log = structlog.get_logger()

API_KEY_PREFIX = "sk-"
MAX_CACHE_ENTRIES = 100_000
EVENT_WAIT_ITERATIONS = 4
SESSION_STAMP_CLAIM = "session_stamp"  # as auth writes it (auth/tokens.py)


@dataclass(frozen=True, slots=True)
class _Claims:
    """What a verified JWT says."""

    user_id: str
    expires: float
    session_stamp: int


@dataclass(slots=True)
class _Entry:
    principal: Principal
    expires: float


@dataclass
class IdentityCache:
    """Principals by user id and by API-key hash, each with a TTL.

    `generation` grows on every invalidation: a lookup that started before one must
    not store what it fetched, since that may already be stale.
    """

    ttl: float
    users: dict[str, _Entry] = field(default_factory=dict)
    keys: dict[str, _Entry] = field(default_factory=dict)
    generation: int = 0

    def user(self, user_id: str) -> Principal | None:
        return self._get(self.users, user_id)

    def key(self, key_hash: str) -> Principal | None:
        return self._get(self.keys, key_hash)

    def store_user(self, principal: Principal, generation: int) -> None:
        self._put(self.users, principal.id, principal, generation)

    def store_key(self, key_hash: str, principal: Principal, generation: int) -> None:
        self._put(self.keys, key_hash, principal, generation)

    def drop_user(self, user_id: str) -> None:
        self.generation += 1
        self.users.pop(user_id, None)
        for key_hash in [h for h, e in self.keys.items() if e.principal.id == user_id]:
            del self.keys[key_hash]

    def drop_key(self, key_hash: str) -> None:
        self.generation += 1
        self.keys.pop(key_hash, None)

    def clear(self) -> None:
        self.generation += 1
        self.users.clear()
        self.keys.clear()

    def _get(self, table: dict[str, _Entry], name: str) -> Principal | None:
        entry = table.get(name)
        if entry is None:
            return None
        if entry.expires <= time.monotonic():
            del table[name]
            return None
        return entry.principal

    def _put(self, table: dict[str, _Entry], name: str, principal: Principal, gen: int) -> None:
        if gen != self.generation:
            return
        if len(table) >= MAX_CACHE_ENTRIES:
            table.clear()
        table[name] = _Entry(principal, time.monotonic() + self.ttl)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Identity:
    """Resolves bearer credentials to principals for the gateway."""

    def __init__(self, bus: Bus, *, cache_seconds: float, timeout: float) -> None:
        self.bus = bus
        self.cache = IdentityCache(ttl=cache_seconds)
        self.timeout = timeout
        self._jwt_params: JwtParams | None = None
        self._jwt_lock = asyncio.Lock()
        # token -> its claims: a token's signature is checked once, its expiry always
        self._verified: dict[str, _Claims] = {}
        self._events: Subscription | None = None

    def listen(self, events: Subscription) -> None:
        """The AUTH_EVENTS subscription whose callback is `on_event`."""
        self._events = events

    async def principal_for(self, credential: str) -> Principal:
        # Auth events that reached us before this request are applied first: nats-py parses
        # a message into its subscription's queue at once but runs the callback a loop
        # iteration later, so a request racing a revocation could still hit the stale
        # cache. Waiting only while one is queued costs nothing in the common case
        # (bounded: a subscription closed at shutdown keeps what it had queued).
        events = self._events
        for _ in range(EVENT_WAIT_ITERATIONS):
            if events is None or not events.pending_msgs:
                break
            await asyncio.sleep(0)
        if credential.startswith(API_KEY_PREFIX):
            return await self._from_api_key(credential)
        return await self._from_jwt(credential)

    async def _from_api_key(self, key: str) -> Principal:
        key_hash = hash_api_key(key)
        cached = self.cache.key(key_hash)
        if cached is not None:
            grant = cached.key
            if grant is None or grant.expires_at is None or grant.expires_at > time.time():
                return cached
            self.cache.drop_key(key_hash)  # expired while cached: auth says why
        generation = self.cache.generation
        try:
            principal = await self.bus.call(
                subjects.AUTH_KEY_RESOLVE,
                KeyResolveRequest(key_hash=key_hash),
                timeout=self.timeout,
            )
        except RagwayError as exc:
            if exc.code == "unauthorized":
                raise unauthorized(exc.detail) from None
            if exc.code in ("not_found", "forbidden", "invalid"):
                raise unauthorized("Invalid API key") from None
            raise
        self.cache.store_key(key_hash, principal, generation)
        return principal

    async def _from_jwt(self, token: str) -> Principal:
        claims = self._verified.get(token)
        if claims is not None and claims.expires <= time.time():
            del self._verified[token]
            raise unauthorized("Token expired")
        if claims is None:
            claims = await self._verify_jwt(token)
            if len(self._verified) >= MAX_CACHE_ENTRIES:
                self._verified.clear()
            self._verified[token] = claims
        principal = await self.user(claims.user_id)
        if principal.session_stamp != claims.session_stamp:
            # a password change or sign-out since this token was issued
            raise unauthorized("This session has ended; sign in again")
        return principal

    async def _verify_jwt(self, token: str) -> _Claims:
        params = await self.jwt_params()
        try:
            claims = jwt.decode(
                token,
                params.secret,
                algorithms=[params.algorithm],
                options={"require": ["exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("Token expired") from None
        except jwt.PyJWTError:
            raise unauthorized("Invalid token") from None
        user_id = claims.get("id") or claims.get("sub")
        expires = claims.get("exp")
        stamp = claims.get(SESSION_STAMP_CLAIM, 0)
        if (
            not isinstance(user_id, str)
            or not user_id
            or not isinstance(expires, int | float)
            or not isinstance(stamp, int)
        ):
            raise unauthorized("Invalid token")
        return _Claims(user_id, float(expires), stamp)

    async def user(self, user_id: str) -> Principal:
        cached = self.cache.user(user_id)
        if cached is not None:
            return cached
        generation = self.cache.generation
        try:
            user = await self.bus.call(
                subjects.AUTH_USER_GET, UserRef(user_id=user_id), timeout=self.timeout
            )
        except RagwayError as exc:
            if exc.code == "not_found":
                raise unauthorized("User not found") from None
            raise
        principal = Principal(
            id=user.id,
            email=user.email,
            name=user.name,
            role=user.role,
            group_ids=user.group_ids,
            session_stamp=user.session_stamp,
        )
        self.cache.store_user(principal, generation)
        return principal

    async def jwt_params(self) -> JwtParams:
        """The verification parameters, fetched once (lazily if auth was not up yet)."""
        if self._jwt_params is not None:
            return self._jwt_params
        async with self._jwt_lock:
            if self._jwt_params is None:
                self._jwt_params = await self.bus.call(
                    subjects.AUTH_JWT_PARAMS, JwtParamsRequest(), timeout=self.timeout
                )
            return self._jwt_params

    async def fetch_jwt_params_until_ready(self, retry_seconds: float = 0.5) -> None:
        """At startup: keep asking auth until it answers (requests also ask lazily)."""
        while self._jwt_params is None:
            try:
                await self.jwt_params()
            except RagwayError as exc:
                log.info("jwt_params_pending", reason=exc.detail)
                await asyncio.sleep(retry_seconds)

    async def on_event(self, msg: Msg) -> None:
        try:
            event = decode(msg.data, AuthEvent)
        except Exception:
            log.warning("auth_event_malformed")
            return
        if event.kind == "key_revoked":
            if event.key_hash:
                self.cache.drop_key(event.key_hash)
            else:
                self.cache.drop_user(event.user_id)
        else:
            self.cache.drop_user(event.user_id)

    async def on_reconnect(self) -> None:
        self.cache.clear()
        log.info("identity_cache_cleared", reason="nats_reconnected")
