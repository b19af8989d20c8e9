"""Helpers for the gateway's file tests: uploads over real multipart, SSE reading, RSS."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def form(content: bytes | Any, filename: str, content_type: str | None = None) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("file", content, filename=filename, content_type=content_type)
    return data


async def generated(total: int, piece: int = 256 * 1024) -> AsyncIterator[bytes]:
    """`total` bytes of text made on the fly, so the client never holds them at once."""
    line = b"ragway streams uploads straight into the object store.\n"
    block = (line * (piece // len(line) + 1))[:piece]
    sent = 0
    while sent < total:
        size = min(piece, total - sent)
        sent += size
        yield block[:size]


def streamed_form(total: int, filename: str = "big.txt") -> aiohttp.MultipartWriter:
    writer = aiohttp.MultipartWriter("form-data")
    part = writer.append(generated(total), {"Content-Type": "text/plain"})
    part.set_content_disposition("form-data", name="file", filename=filename)
    return writer


async def sse_events(reply: aiohttp.ClientResponse) -> list[Any]:
    events: list[Any] = []
    async for raw in reply.content:
        line = raw.decode().strip()
        if line.startswith("data:"):
            data = line[5:].strip()
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


class RssPeak:
    """The highest RSS of this process seen while the block runs (sampled every 5 ms)."""

    def __init__(self) -> None:
        self.baseline = 0
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes())
            await asyncio.sleep(0.005)

    async def __aenter__(self) -> RssPeak:
        self.baseline = self.peak = rss_bytes()
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, rss_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.baseline
