"""Run one service until SIGTERM/SIGINT: the few lines every __main__ shares."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

import structlog
import uvloop

log = structlog.get_logger()

T = TypeVar("T")


def run_until_signalled(
    build: Callable[[asyncio.Event], AbstractAsyncContextManager[Any]], name: str
) -> None:
    """Enter `build(stop_event)`, wait for a signal, exit it (which drains).

    The loop is uvloop's (libuv): the same asyncio API with cheaper sockets, timers and
    callbacks, which is most of what a relaying service spends its CPU on (bench/RESULTS.md).
    """

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with build(stop):
            log.info("service_started", service=name)
            await stop.wait()
            log.info("service_stopping", service=name)
        log.info("service_stopped", service=name)

    uvloop.run(main())


def run_stoppable(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, where SIGTERM/SIGINT cancel `main` so that its `async with`
    blocks clean up (a benchmark's stack stops its child processes) before exiting 143."""

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        return await main

    try:
        return asyncio.run(guarded())
    except asyncio.CancelledError:
        raise SystemExit(143) from None
