"""Run one service until SIGTERM/SIGINT: the few lines every __main__ shares."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import structlog
import uvloop

log = structlog.get_logger()


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
