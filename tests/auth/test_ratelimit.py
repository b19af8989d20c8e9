"""The attempt limiter on a real nats-server bucket, with a clock the test moves."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from nats.aio.client import Client

from auth.ratelimit import AttemptLimiter, Limit, TooManyAttempts, counter_key, wait_before_next
from catalog.buckets import Bucket

WALL = Limit(2)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def a_bucket(nc: Client) -> Bucket:
    return await Bucket.open(nc.jetstream(), f"t{uuid.uuid4().hex[:10]}_signin", ttl=60)


async def a_limiter(nc: Client, clock: Clock) -> AttemptLimiter:
    return AttemptLimiter(await a_bucket(nc), window=60, clock=clock)


async def refused(limiter: AttemptLimiter, keys: list[tuple[str, Limit]]) -> float:
    with pytest.raises(TooManyAttempts) as caught:
        await limiter.acquire(keys)
    return caught.value.retry_after


async def test_a_wall_opens_when_the_oldest_attempt_leaves_the_window(nc: Client) -> None:
    clock = Clock()
    limiter = await a_limiter(nc, clock)
    await limiter.acquire([("k", WALL)])
    clock.now += 1
    await limiter.acquire([("k", WALL)])
    assert await refused(limiter, [("k", WALL)]) == pytest.approx(59)
    clock.now += 59.5  # the first attempt left the window, the second did not
    await limiter.acquire([("k", WALL)])
    await refused(limiter, [("k", WALL)])


async def test_a_back_off_doubles_with_every_attempt_beyond_the_allowance(nc: Client) -> None:
    clock = Clock()
    limiter = await a_limiter(nc, clock)
    backoff = Limit(2, backoff_seconds=1.0)
    for _ in range(2):
        await limiter.acquire([("k", backoff)])
    waits = []
    for _ in range(4):
        wait = await refused(limiter, [("k", backoff)])
        waits.append(wait)
        clock.now += wait
        await limiter.acquire([("k", backoff)])
    assert waits == [1.0, 2.0, 4.0, 8.0]


def test_a_back_off_never_exceeds_the_window() -> None:
    stamps = [100.0] * 40
    assert wait_before_next(stamps, 100.0, Limit(2, backoff_seconds=1.0), 60) == 60


async def test_one_refusing_key_refuses_the_attempt_without_counting_it_on_the_others(
    nc: Client,
) -> None:
    limiter = await a_limiter(nc, Clock())
    one = Limit(1)
    await limiter.acquire([("email:a", one), ("addr:x", one)])
    await refused(limiter, [("email:b", one), ("addr:x", one)])
    await limiter.acquire([("email:b", one), ("addr:y", one)])


async def test_a_released_attempt_no_longer_counts(nc: Client) -> None:
    limiter = await a_limiter(nc, Clock())
    one = Limit(1)
    stamp = await limiter.acquire([("k", one)])
    await limiter.release("k", stamp)
    await limiter.acquire([("k", one)])
    await limiter.reset("k")
    await limiter.acquire([("k", one)])


async def test_two_instances_share_the_limit_even_when_racing(nc: Client) -> None:
    # two auth instances: the same bucket, their own limiter objects
    clock = Clock()
    bucket = await a_bucket(nc)
    first, second = (AttemptLimiter(bucket, 60, clock) for _ in range(2))

    async def one(limiter: AttemptLimiter) -> bool:
        try:
            await limiter.acquire([("email:a", Limit(5))])
        except TooManyAttempts:
            return False
        return True

    outcomes = await asyncio.gather(*(one(limiter) for limiter in [first, second] * 10))
    assert sum(outcomes) == 5


async def test_the_bucket_holds_hashes_not_emails(nc: Client) -> None:
    bucket = await a_bucket(nc)
    await AttemptLimiter(bucket, 60, Clock()).acquire([("email:someone@example.test", Limit(3))])
    keys = await bucket.latest()
    assert list(keys) == [counter_key("email:someone@example.test")]
    assert b"someone" not in b"".join(keys.values())
