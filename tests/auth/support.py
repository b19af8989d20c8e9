"""Helpers for auth tests: settings on fresh buckets, typed calls, the event feed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
from nats.aio.msg import Msg

from auth.app import serve
from auth.settings import Settings
from common.bus import Bus
from common.codec import decode
from common.errors import RagwayError
from contracts import subjects
from contracts.auth import AuthEvent, JwtParamsRequest, Session, SignupRequest
from contracts.endpoint import Endpoint, Rep, Req

PASSWORD = "correct horse battery"


def fast_settings(nats_url: str, **overrides: object) -> Settings:
    """Real argon2id, at a cost that keeps the suite fast; a fresh bucket prefix."""
    base = Settings(
        nats_url=nats_url,
        bucket_prefix=f"t{uuid.uuid4().hex[:10]}",
        password_time_cost=1,
        password_memory_kib=1024,
        password_parallelism=1,
        # most tests want active users and many sign-ups; the defaults have their own tests
        default_user_role="user",
        signup_max_per_address=100_000,
    )
    return msgspec.structs.replace(base, **overrides)


class Events:
    """AuthEvents as they arrive on AUTH_EVENTS."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[AuthEvent] = asyncio.Queue()

    async def on_msg(self, msg: Msg) -> None:
        self.queue.put_nowait(decode(msg.data, AuthEvent))

    async def next(self) -> AuthEvent:
        async with asyncio.timeout(2):
            return await self.queue.get()


async def call(bus: Bus, endpoint: Endpoint[Req, Rep], message: Req) -> Rep:
    return await bus.call(endpoint, message, timeout=5)


async def signup(bus: Bus, email: str, name: str = "Ada", password: str = PASSWORD) -> Session:
    request = SignupRequest(name=name, email=email, password=password)
    return await call(bus, subjects.AUTH_SIGNUP, request)


async def wait_until_answering(bus: Bus, attempts: int = 100) -> None:
    """Wait until a request from another connection reaches the service.

    nats-server 2.15 occasionally answers "no responders" for a millisecond or so after a
    subscription was flushed on another connection; a real client would just retry.
    """
    for _ in range(attempts):
        try:
            await bus.call(subjects.AUTH_JWT_PARAMS, JwtParamsRequest(), timeout=2)
            return
        except RagwayError as exc:
            if exc.code != "unavailable":
                raise
            await asyncio.sleep(0.01)
    raise AssertionError("the auth service never answered")


@asynccontextmanager
async def running(settings: Settings, bus: Bus) -> AsyncIterator[Settings]:
    """The auth service, up and reachable."""
    async with serve(settings):
        await wait_until_answering(bus)
        yield settings
