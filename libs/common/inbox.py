"""Private inboxes for streamed replies: one wildcard subscription per connection.

A stream needs a subject only its caller listens on. Subscribing per stream costs a SUB
and an UNSUB written to the server, interest churn there, and a subscription task in
nats-py per stream; like nats-py's own request mux, `Inboxes` subscribes once to
`<inbox prefix>.>` and hands each message to the `Mailbox` its subject names.

A mailbox has two subjects: `subject` for the stream's messages and `reply_subject` for
the one answer to the request that opened it (published with that reply subject), so
asking and streaming need no other subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

REPLY_SUFFIX = ".r"
# streams go to `<inbox prefix>.stream.<id>`, apart from the replies to plain requests
# (`<inbox prefix>.<22-character nuid>...`): a service that streams to a caller may
# publish under the caller's `.stream.` only (stack.nats_permissions), so it cannot
# answer in place of another service (a forged principal from auth, say)
STREAM_TOKEN = "stream"


def stream_prefix(inbox_prefix: str) -> str:
    """Where streams to the user whose reply subjects start with `inbox_prefix` go."""
    return f"{inbox_prefix}.{STREAM_TOKEN}"


class Mailbox:
    """The messages of one stream in arrival order, for a single reader."""

    __slots__ = ("_messages", "_reply", "_waiter", "reply_subject", "subject")

    def __init__(self, subject: str) -> None:
        self.subject = subject
        self.reply_subject = subject + REPLY_SUFFIX
        self._messages: deque[Msg] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._reply: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()

    async def reply(self) -> Msg:
        """The next answer sent to `reply_subject` (bound it with a timeout)."""
        msg = await self._reply
        self._reply = asyncio.get_running_loop().create_future()
        return msg

    async def batch(self) -> list[Msg]:
        """Everything that arrived since the last call, waiting for at least one message."""
        while not self._messages:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        batch = list(self._messages)
        self._messages.clear()
        return batch

    def _deliver(self, msg: Msg) -> None:
        self._messages.append(msg)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _answer(self, msg: Msg) -> None:
        if not self._reply.done():
            self._reply.set_result(msg)


class Inboxes:
    """Mailboxes under one wildcard subscription on `nc` (subscribed on first use)."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        inbox_prefix, unique = nc.new_inbox().split(".", 1)
        self._prefix = f"{stream_prefix(inbox_prefix)}.{unique}"
        self._skip = len(self._prefix) + 1
        self._boxes: dict[str, Mailbox] = {}
        self._ids = itertools.count()
        self._sub: Subscription | None = None
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def open(self) -> AsyncIterator[Mailbox]:
        """A mailbox that receives from the moment this returns until the block exits."""
        if self._sub is None:
            await self.start()
        token = str(next(self._ids))
        box = Mailbox(f"{self._prefix}.{token}")
        self._boxes[token] = box
        try:
            yield box
        finally:
            del self._boxes[token]

    async def start(self) -> None:
        """Subscribe now rather than on the first `open` (idempotent)."""
        async with self._lock:
            if self._sub is None:
                self._sub = await self._nc.subscribe(f"{self._prefix}.>", cb=self._dispatch)
                # the server knows the interest before anyone publishes to a mailbox
                await self._nc.flush()

    async def _dispatch(self, msg: Msg) -> None:
        token = msg.subject[self._skip :]
        if token.endswith(REPLY_SUFFIX):
            box = self._boxes.get(token[: -len(REPLY_SUFFIX)])
            if box is not None:
                box._answer(msg)
            return
        box = self._boxes.get(token)
        if box is not None:
            box._deliver(msg)

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
