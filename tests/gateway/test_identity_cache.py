"""Cached principals never outlive what auth says: events and reconnects drop them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from nats.aio.client import Client

from common.bus import Bus
from contracts import subjects
from contracts.auth import AuthEvent, Principal
from gateway.app import GatewayHandle
from gateway.identity import IdentityCache
from gateway.state import IDENTITY


def principal(user_id: str) -> Principal:
    return Principal(id=user_id, email=f"{user_id}@x.test", name=user_id, role="user")


async def wait_until(predicate: Callable[[], bool], within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_auth_events_on_the_bus_drop_cached_users_and_keys(
    gateway: GatewayHandle, nc: Client
) -> None:
    cache = gateway.app[IDENTITY].cache
    alice, bob = principal("alice-ev"), principal("bob-ev")
    cache.store_user(alice, cache.generation)
    cache.store_key("hash-alice", alice, cache.generation)
    cache.store_key("hash-alice-2", alice, cache.generation)
    cache.store_user(bob, cache.generation)
    cache.store_key("hash-bob", bob, cache.generation)

    revoked = AuthEvent(kind="key_revoked", user_id="bob-ev", key_hash="hash-bob")
    await Bus(nc).publish(subjects.AUTH_EVENTS, revoked)
    await wait_until(lambda: cache.key("hash-bob") is None)
    assert cache.user("bob-ev") == bob

    updated = AuthEvent(kind="user_updated", user_id="alice-ev")
    await Bus(nc).publish(subjects.AUTH_EVENTS, updated)
    await wait_until(lambda: cache.user("alice-ev") is None)
    assert cache.key("hash-alice") is None
    assert cache.key("hash-alice-2") is None
    assert cache.user("bob-ev") == bob


async def test_a_reconnect_clears_every_cached_principal(gateway: GatewayHandle) -> None:
    identity = gateway.app[IDENTITY]
    identity.cache.store_user(principal("carol"), identity.cache.generation)
    await identity.on_reconnect()
    assert identity.cache.user("carol") is None


def test_a_lookup_that_raced_an_invalidation_is_not_stored() -> None:
    cache = IdentityCache(ttl=60)
    started_at = cache.generation
    cache.drop_user("dave")  # an event arrives while the lookup is in flight
    cache.store_user(principal("dave"), started_at)
    assert cache.user("dave") is None


def test_entries_expire_after_their_ttl() -> None:
    cache = IdentityCache(ttl=0.0)
    cache.store_user(principal("erin"), cache.generation)
    assert cache.user("erin") is None
