"""idle_timeout: a relay's bound that only idle time counts against."""

from __future__ import annotations

import asyncio

import pytest

from common.idle import idle_timeout


async def test_a_block_that_keeps_being_touched_outlives_the_idle_bound() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    # touched every 0.05 s against a 0.5 s bound: wide enough for a loaded machine
    async with idle_timeout(0.5) as idle:
        for _ in range(16):
            await asyncio.sleep(0.05)
            idle.touch()
    assert loop.time() - started >= 0.8
    assert not idle.expired()


async def test_a_block_that_goes_quiet_gets_timeout_error_after_the_bound() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        async with idle_timeout(0.1) as idle:
            idle.touch()
            started = loop.time()
            await asyncio.sleep(5)
    assert idle.expired()
    assert 0.08 <= loop.time() - started < 1


async def test_the_bound_counts_from_the_last_touch_not_from_the_start() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        async with idle_timeout(1.0) as idle:
            await asyncio.sleep(0.6)
            idle.touch()
            touched = loop.time()
            await asyncio.sleep(5)
    assert loop.time() - touched >= 0.99


async def test_other_timeouts_and_errors_pass_through_unchanged() -> None:
    with pytest.raises(TimeoutError):
        async with idle_timeout(5) as idle:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(1)
    assert not idle.expired()
    with pytest.raises(ValueError):
        async with idle_timeout(5):
            raise ValueError("boom")


async def test_cancelling_the_task_is_not_turned_into_a_timeout() -> None:
    async def relay() -> None:
        async with idle_timeout(5):
            await asyncio.sleep(5)

    task = asyncio.create_task(relay())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
