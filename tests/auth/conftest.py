"""An auth service per test, on its own KV buckets, with cheap password hashing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client

from auth.settings import Settings
from common.bus import Bus
from contracts import subjects
from tests.auth.support import Events, fast_settings, running


@pytest.fixture
def settings(nats_url: str) -> Settings:
    return fast_settings(nats_url)


@pytest.fixture
async def auth(settings: Settings, bus: Bus, events: Events) -> AsyncIterator[Settings]:
    async with running(settings, bus):
        yield settings


@pytest.fixture
async def events(nc: Client) -> AsyncIterator[Events]:
    collected = Events()
    sub = await nc.subscribe(subjects.AUTH_EVENTS.subject, cb=collected.on_msg)
    await nc.flush()
    yield collected
    await sub.unsubscribe()
