"""The failure limiter on a real nats-server bucket, with a clock the test moves."""

from __future__ import annotations

import asyncio
import uuid

from nats.aio.client import Client

from auth.ratelimit import FailureLimiter, counter_key
from catalog.buckets import Bucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def a_bucket(nc: Client) -> Bucket:
    return await Bucket.open(nc.jetstream(), f"t{uuid.uuid4().hex[:10]}_signin", ttl=60)


async def a_limiter(nc: Client, max_failures: int, clock: Clock) -> FailureLimiter:
    return FailureLimiter(await a_bucket(nc), max_failures=max_failures, window=60, clock=clock)


async def test_attempts_expire_after_the_window(nc: Client) -> None:
    clock = Clock()
    limiter = await a_limiter(nc, 2, clock)
    assert await limiter.acquire(["k"]) is not None
    clock.now += 1
    assert await limiter.acquire(["k"]) is not None
    assert await limiter.acquire(["k"]) is None
    clock.now += 59.5  # the first attempt left the window, the second did not
    assert await limiter.acquire(["k"]) is not None
    assert await limiter.acquire(["k"]) is None


async def test_one_blocked_key_blocks_the_attempt_without_counting_it_on_the_others(
    nc: Client,
) -> None:
    limiter = await a_limiter(nc, 1, Clock())
    assert await limiter.acquire(["email:a", "addr:x"]) is not None
    assert await limiter.acquire(["email:b", "addr:x"]) is None
    assert await limiter.acquire(["email:b", "addr:y"]) is not None


async def test_a_released_attempt_no_longer_counts(nc: Client) -> None:
    limiter = await a_limiter(nc, 1, Clock())
    stamp = await limiter.acquire(["k"])
    assert stamp is not None
    await limiter.release("k", stamp)
    assert await limiter.acquire(["k"]) is not None
    await limiter.reset("k")
    assert await limiter.acquire(["k"]) is not None


async def test_two_instances_share_the_limit_even_when_racing(nc: Client) -> None:
    # two auth instances: the same bucket, their own limiter objects
    clock = Clock()
    bucket = await a_bucket(nc)
    first, second = (FailureLimiter(bucket, 5, 60, clock) for _ in range(2))
    outcomes = await asyncio.gather(
        *(limiter.acquire(["email:a"]) for limiter in [first, second] * 10)
    )
    assert sum(stamp is not None for stamp in outcomes) == 5


async def test_the_bucket_holds_hashes_not_emails(nc: Client) -> None:
    bucket = await a_bucket(nc)
    await FailureLimiter(bucket, 3, 60, Clock()).acquire(["email:someone@example.test"])
    keys = await bucket.latest()
    assert list(keys) == [counter_key("email:someone@example.test")]
    assert b"someone" not in b"".join(keys.values())
