"""Cancel messages for running streams: one wildcard subscription per prefix.

The gateway publishes on the cancel event's subject for `<stream_id>` when its client
leaves. Every runner that works for that stream (a backend relay, a pipe, a tool loop and
the rounds it opens) registers a watch; a message cancels each watch's task. One wildcard
subscription serves them all, instead of a SUB and an UNSUB per stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from contracts.endpoint import Event


class CancelWatch:
    """Set when the stream's caller cancelled; cancels `task` (which may change over time)."""

    __slots__ = ("requested", "stream_id", "task")

    def __init__(self, stream_id: str, task: asyncio.Future[Any] | None) -> None:
        self.stream_id = stream_id
        self.task = task
        self.requested = False

    def trigger(self) -> None:
        self.requested = True
        if self.task is not None and not self.task.done():
            self.task.cancel()


class CancelRegistry:
    def __init__(self, nc: Client, cancels: Event[None]) -> None:
        self._nc = nc
        self._cancels = cancels
        self._watches: dict[str, set[CancelWatch]] = {}
        self._sub: Subscription | None = None
        self._lock = asyncio.Lock()

    async def watch(
        self, stream_id: str, task: asyncio.Future[Any] | None = None
    ) -> CancelWatch | None:
        """Register `task` for `stream_id` (None when the job has no stream id)."""
        if not stream_id:
            return None
        if self._sub is None:
            async with self._lock:
                if self._sub is None:
                    self._sub = await self._nc.subscribe(self._cancels.subject, cb=self._on_cancel)
        watch = CancelWatch(stream_id, task)
        self._watches.setdefault(stream_id, set()).add(watch)
        return watch

    def forget(self, watch: CancelWatch | None) -> None:
        if watch is None:
            return
        watches = self._watches.get(watch.stream_id)
        if watches is not None:
            watches.discard(watch)
            if not watches:
                del self._watches[watch.stream_id]

    async def _on_cancel(self, msg: Msg) -> None:
        for watch in list(self._watches.get(self._cancels.token_of(msg.subject), ())):
            watch.trigger()

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
