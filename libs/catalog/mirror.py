"""A bucket's latest values in memory, kept current by following it (`Bucket.follow`):
reads that must cost nothing (is this model id a preset?) without a round trip."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Generic, TypeVar

import msgspec
import structlog

from catalog.buckets import Bucket

T = TypeVar("T")
log = structlog.get_logger()


class Mirror(Generic[T]):
    """Values by key, `decode`d; a value that does not decode is logged and left out."""

    def __init__(self, bucket: Bucket, decode: Callable[[bytes], T]) -> None:
        self.bucket = bucket
        self.items: dict[str, T] = {}
        self.decode = decode  # also what a compare-and-set on the bucket decodes with
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Follow the bucket; return once the values it holds now are in."""
        self._task = asyncio.create_task(self._follow())
        ready = asyncio.ensure_future(self._ready.wait())
        await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not self._ready.is_set():
            ready.cancel()
            self._task.result()  # the reason it stopped (e.g. the bus is restarting)

    async def _follow(self) -> None:
        async with contextlib.aclosing(self.bucket.follow()) as changes:
            async for change in changes:
                if change is None:
                    self._ready.set()
                    continue
                key, value = change
                if value is None:
                    self.items.pop(key, None)
                    continue
                try:
                    self.items[key] = self.decode(value)
                except msgspec.DecodeError:
                    log.warning("mirror_value_malformed", bucket=self.bucket.name, key=key)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
