"""Limits counted through KV on a real nats-server: two limiters stand for two gateways
sharing one counter bucket. Exact under concurrency, settled from real usage, surviving a
restart, the tightest limit winning and named in the refusal."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
from nats.aio.client import Client

from catalog.buckets import Bucket
from contracts.auth import KeyGrant, Principal
from gateway.limiter import Limiter, RateLimited, Usage
from gateway.limits import Budget, Limit, LimitBook, limit_key


def principal(role: str = "user", key: str | None = None) -> Principal:
    user_id = uuid.uuid4().hex
    grant = KeyGrant(id=key) if key else None
    return Principal(id=user_id, email=f"{user_id}@x.test", name="U", role=role, key=grant)  # type: ignore[arg-type]


def limit(scope: str, target: str, **values: object) -> Limit:
    return Limit(limit_id=limit_key(scope, target), scope=scope, id=target, **values)  # type: ignore[arg-type]


async def away_from_a_minute_boundary() -> None:
    """Windows are calendar minutes: a test counting within one starts well inside it."""
    left = 60 - time.time() % 60
    if left < 8:
        await asyncio.sleep(left + 0.1)


class Gateways:
    def __init__(self, limits: Bucket, usage: Bucket, count: int) -> None:
        self.usage = usage
        self.books = [LimitBook(limits) for _ in range(count)]
        self.limiters = [Limiter(b, usage, stream_slot_seconds=60) for b in self.books]

    def set(self, *limits: Limit) -> None:
        for book in self.books:
            for item in limits:
                book.by_key[item.limit_id] = item

    async def stored(self, counter: str) -> Usage:
        value = await self.usage.get(counter)
        assert value is not None
        return msgspec.json.decode(value, type=Usage)


@pytest.fixture
async def gateways(nc: Client) -> AsyncIterator[Gateways]:
    js = nc.jetstream()
    prefix = f"t{uuid.uuid4().hex[:8]}"
    made = Gateways(
        await Bucket.open(js, f"{prefix}_limits"), await Bucket.open(js, f"{prefix}_usage"), 2
    )
    yield made
    for limiter in made.limiters:
        await limiter.aclose()


async def admitted(limiter: Limiter, who: Principal, estimate: int = 10) -> bool:
    try:
        ticket = await limiter.admit(who, estimate)
    except RateLimited:
        return False
    limiter.settle(ticket, estimate)
    return True


async def test_two_gateways_admit_exactly_the_rpm_between_them_under_concurrency(
    gateways: Gateways,
) -> None:
    await away_from_a_minute_boundary()
    who = principal()
    gateways.set(limit("user", who.id, rpm=25))
    results = await asyncio.gather(*(admitted(gateways.limiters[i % 2], who) for i in range(80)))
    assert sum(results) == 25
    usage = await gateways.stored(f"u.{who.id}")
    assert usage.requests <= 25


async def test_the_refusal_names_the_limit_and_says_when_to_retry(gateways: Gateways) -> None:
    await away_from_a_minute_boundary()
    who = principal()
    gateways.set(limit("user", who.id, rpm=1))
    assert await admitted(gateways.limiters[0], who)
    with pytest.raises(RateLimited) as refused:
        await gateways.limiters[1].admit(who, 10)
    assert refused.value.code == "rate_limited"
    assert f"user.{who.id}" in refused.value.detail
    assert "1 requests per minute" in refused.value.detail
    assert 1 <= refused.value.retry_after <= 60


async def test_the_tightest_of_role_group_and_user_limits_wins(gateways: Gateways) -> None:
    await away_from_a_minute_boundary()
    who = msgspec.structs.replace(principal(role="user"), group_ids=("g1",))
    gateways.set(
        limit("role", "user", rpm=100),
        limit("group", "g1", rpm=3),
        limit("user", who.id, rpm=50),
    )
    results = [await admitted(gateways.limiters[0], who) for _ in range(6)]
    assert results == [True, True, True, False, False, False]
    with pytest.raises(RateLimited) as refused:
        await gateways.limiters[0].admit(who, 1)
    assert "group.g1" in refused.value.detail


async def test_a_key_limit_counts_the_key_apart_from_its_user(gateways: Gateways) -> None:
    await away_from_a_minute_boundary()
    keyed = principal(key=uuid.uuid4().hex)
    assert keyed.key is not None
    gateways.set(limit("key", keyed.key.id, rpm=2), limit("user", keyed.id, rpm=3))
    unkeyed = msgspec.structs.replace(keyed, key=None)
    assert [await admitted(gateways.limiters[0], keyed) for _ in range(3)] == [True, True, False]
    # the user's own counter had two of its three: one more without the key
    await gateways.limiters[0].idle()  # the refused request gave its unit back
    assert [await admitted(gateways.limiters[1], unkeyed) for _ in range(2)] == [True, False]


async def test_without_a_limit_nothing_is_counted(gateways: Gateways) -> None:
    who = principal()
    assert await gateways.limiters[0].admit(who, 10) is None
    assert await gateways.usage.get(f"u.{who.id}") is None


async def test_a_budget_is_charged_the_real_usage_and_stops_at_its_end(
    gateways: Gateways,
) -> None:
    who = principal()
    gateways.set(limit("user", who.id, budget=Budget(tokens=1000, period="day")))
    count = 0
    while await _used(gateways.limiters[count % 2], who, estimate=100, used=50):
        count += 1
        assert count < 100
    # admitted while an estimate of 100 fitted: never more than the budget really used
    assert 17 <= count <= 20
    for limiter in gateways.limiters:
        await limiter.aclose()  # unused reservations go back
    stored = await gateways.stored(f"u.{who.id}")
    assert stored.day_tokens == 50 * count
    assert stored.month_tokens == 50 * count


async def _used(limiter: Limiter, who: Principal, *, estimate: int, used: int) -> bool:
    try:
        ticket = await limiter.admit(who, estimate)
    except RateLimited as refused:
        assert "tokens per day" in refused.detail
        return False
    limiter.settle(ticket, used)
    return True


async def test_usage_beyond_the_estimate_is_charged_at_once(gateways: Gateways) -> None:
    await away_from_a_minute_boundary()
    who = principal()
    gateways.set(limit("user", who.id, tpm=10_000))
    first, second = gateways.limiters
    ticket = await first.admit(who, 10)
    first.settle(ticket, 9_000)  # a long answer: the debt goes to KV in the background
    deadline = time.monotonic() + 5
    while (await gateways.stored(f"u.{who.id}")).tokens < 9_000:
        assert time.monotonic() < deadline, "the debt was never charged"
        await asyncio.sleep(0.01)
    # the other gateway now sees what is left: 1,000 at most, so 2,000 cannot fit
    with pytest.raises(RateLimited) as refused:
        await second.admit(who, 2_000)
    assert "tokens per minute" in refused.value.detail


async def test_concurrent_requests_are_bounded_across_gateways_and_freed_after(
    gateways: Gateways,
) -> None:
    who = principal()
    gateways.set(limit("user", who.id, concurrent=2))
    first, second = gateways.limiters
    held = [await first.admit(who, 1), await second.admit(who, 1)]
    with pytest.raises(RateLimited) as refused:
        await first.admit(who, 1)
    assert "2 requests at once" in refused.value.detail
    assert refused.value.retry_after == 1
    first.settle(held[0], 1)
    deadline = time.monotonic() + 5
    while True:
        try:
            again = await second.admit(who, 1)
            break
        except RateLimited:
            assert time.monotonic() < deadline, "the slot never came back"
            await asyncio.sleep(0.01)
    second.settle(again, 1)
    second.settle(held[1], 1)


async def test_counts_survive_a_restart(gateways: Gateways, nc: Client) -> None:
    await away_from_a_minute_boundary()
    who = principal()
    gateways.set(limit("user", who.id, rpm=5))
    assert [await admitted(gateways.limiters[0], who) for _ in range(3)] == [True] * 3
    await gateways.limiters[0].aclose()
    restarted = Limiter(gateways.books[0], gateways.usage, stream_slot_seconds=60)
    assert [await admitted(restarted, who) for _ in range(3)] == [True, True, False]
    await restarted.aclose()


async def test_limits_reach_every_gateway_through_the_bucket(gateways: Gateways) -> None:
    book = gateways.books[0]
    following = asyncio.create_task(book.follow())
    try:
        await asyncio.wait_for(book.ready.wait(), 5)
        who = principal()
        item = limit("user", who.id, rpm=7)
        await book.bucket.put(item.limit_id, msgspec.json.encode(item))
        deadline = time.monotonic() + 5
        while item.limit_id not in book.by_key:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert book.bindings(who)[0].bounds["rpm"].value == 7
        await book.bucket.delete(item.limit_id)
        while item.limit_id in book.by_key:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert book.bindings(who) == []
    finally:
        following.cancel()
