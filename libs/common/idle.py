"""An idle bound for relays: expire an `asyncio.timeout` once nothing arrived for a while.

Rescheduling a `Timeout` on every chunk cancels its timer and makes a new one (a timer
handle, and with uvloop a libuv timer, per chunk). Here a chunk only records the time;
the one timer, when it fires, either expires the timeout or re-arms for what is left.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class IdleDeadline:
    """Expires `timeout` after `idle` seconds without `touch()`."""

    __slots__ = ("_handle", "_idle", "_loop", "_timeout", "last")

    def __init__(self, timeout: asyncio.Timeout, idle: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._idle = idle
        self.last = self._loop.time()
        self._handle = self._loop.call_at(self.last + idle, self._check)

    def touch(self) -> None:
        """Something arrived: the idle time starts again."""
        self.last = self._loop.time()

    def cancel(self) -> None:
        self._handle.cancel()

    def expired(self) -> bool:
        """The bound ran out (the TimeoutError came from here)."""
        return self._timeout.expired()

    def _check(self) -> None:
        now = self._loop.time()
        due = self.last + self._idle
        if due <= now:
            self._timeout.reschedule(now)  # expires it: the task gets TimeoutError
        else:
            self._handle = self._loop.call_at(due, self._check)


@asynccontextmanager
async def idle_timeout(idle: float) -> AsyncIterator[IdleDeadline]:
    """`asyncio.timeout` that expires after `idle` seconds without `touch()` (TimeoutError
    out of the block, like asyncio.timeout; `expired()` tells it was this bound)."""
    async with asyncio.timeout(None) as timeout:
        deadline = IdleDeadline(timeout, idle)
        try:
            yield deadline
        finally:
            deadline.cancel()
