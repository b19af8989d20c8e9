"""JetStream KV buckets and object stores with ragway's conventions: `Bucket` opens or
creates a KV bucket and reads, writes, lists and follows its keys."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import msgspec
import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, KeyValueConfig, ObjectStoreConfig, StorageType
from nats.js.errors import (
    APIError,
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
    ServiceUnavailableError,
)
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, KeyValue
from nats.js.object_store import ObjectStore

from common.bus import BUS_UNAVAILABLE
from common.errors import RagwayError

T = TypeVar("T")

CAS_ATTEMPTS = 20
CAS_PAUSE_S = 0.005  # between compare-and-set attempts that lost to another writer
WRONG_LAST_SEQUENCE = (10071, 10164)  # JetStream's "expected last sequence" mismatch codes
# How often a listing looks whether the bus is still there while it waits for keys.
DISCONNECT_CHECK_S = 0.05
# Reads `get_many` keeps in flight at once (well under JetStream's API queue limit).
GET_MANY_WINDOW = 256

# How long a service starting beside a JetStream that is still forming (a new cluster
# electing its leaders) keeps asking before it gives up.
JETSTREAM_STARTUP_S = 30.0
# JetStream answers that mean "not yet", not "no": asked again (at startup, and by a blob
# read whose new consumer the reader's server cannot reach yet)
_NOT_YET = (nats.errors.TimeoutError, nats.errors.NoRespondersError, ServiceUnavailableError)

_encode = msgspec.json.Encoder().encode
log = structlog.get_logger()


async def once_jetstream_answers(
    what: str, attempt: Callable[[], Awaitable[T]], within_s: float = JETSTREAM_STARTUP_S
) -> T:
    """`attempt()`, asked again while JetStream answers "not yet" (a timeout, no
    responders, 503), for at most `within_s`; then its last error is raised."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    pause = 0.1
    while True:
        try:
            return await attempt()
        except _NOT_YET as exc:
            left = deadline - loop.time()
            if left <= 0:
                raise
            log.warning("jetstream_not_ready", what=what, error=repr(exc))
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 2.0)


class _StoredMsg(msgspec.Struct):
    data: str = ""


class _MsgGetReply(msgspec.Struct):
    """`$JS.API.STREAM.MSG.GET`'s answer: the message, or an error (404: no such key)."""

    message: _StoredMsg | None = None
    error: dict[str, object] | None = None


_decode_msg_get = msgspec.json.Decoder(_MsgGetReply).decode
_NO_MESSAGE = 404


class Entry(NamedTuple):
    """A key's current value and the revision a compare-and-set writes against."""

    value: bytes
    revision: int


@dataclass(frozen=True)
class Bucket:
    """One KV bucket: the JetStream context it was opened with, its name, its nats KeyValue."""

    js: JetStreamContext
    name: str
    kv: KeyValue

    @classmethod
    async def open(
        cls,
        js: JetStreamContext,
        name: str,
        replicas: int = 1,
        history: int = 1,
        ttl: float | None = None,
        within_s: float = JETSTREAM_STARTUP_S,
    ) -> Bucket:
        """Open bucket `name`, creating it (file storage) only when it does not exist.

        An existing bucket keeps its own settings. Only "no such bucket" leads to a create:
        any other failure (JetStream starting or unreachable, a stream that is not a KV
        bucket) is raised, never answered by creating the bucket anew. `ttl`: a key not
        written for that many seconds is dropped (None: kept). While JetStream answers
        "not yet" it is asked again, for `within_s`.
        """

        async def open_or_create() -> KeyValue:
            try:
                return await js.key_value(name)
            except BucketNotFoundError:
                # creating an identical bucket is idempotent: racing instances both succeed
                return await js.create_key_value(
                    KeyValueConfig(
                        bucket=name,
                        history=history,
                        replicas=replicas,
                        storage=StorageType.FILE,
                        ttl=ttl,
                    )
                )

        return cls(js, name, await once_jetstream_answers(name, open_or_create, within_s))

    async def entry(self, key: str) -> Entry | None:
        """The key's value and revision; None when it is missing or deleted."""
        try:
            found = await self.kv.get(key)
        except KeyNotFoundError:
            return None
        if not found.value:
            return None
        return Entry(found.value, found.revision or 0)

    async def get(self, key: str) -> bytes | None:
        """The key's value; None when it is missing or deleted."""
        found = await self.entry(key)
        return None if found is None else found.value

    async def get_many(self, keys: list[str], timeout: float = 10.0) -> list[bytes | None]:
        """The values of `keys`, in order (None: missing or deleted), read from the stream's
        leader like `get`, but pipelined: the requests go out `GET_MANY_WINDOW` at a time on
        one subscription, not one request future each (10,000 records: ~0.26 s, against
        ~0.55-0.8 s through `get`). Leader reads keep it as fresh as `get`; a direct batch
        get would need `allow_direct`, which lets replicas answer with stale values."""
        nc = self.js._nc  # nats-py offers no public way back from the context to its connection
        api = f"{self.js._prefix}.STREAM.MSG.GET.KV_{self.name}"
        found: list[bytes | None] = [None] * len(keys)
        if not keys:
            return found
        room = asyncio.Semaphore(GET_MANY_WINDOW)
        answered = 0
        failure: list[RagwayError] = []
        all_in = asyncio.Event()

        async def on_reply(msg: Msg) -> None:
            nonlocal answered
            reply = _decode_msg_get(msg.data)
            if reply.message is not None and reply.message.data:
                found[int(msg.subject.rsplit(".", 1)[1])] = base64.b64decode(reply.message.data)
            elif reply.error is not None and reply.error.get("code") != _NO_MESSAGE:
                failure.append(RagwayError("unavailable", f"Reading {self.name} failed; try again"))
                all_in.set()
            answered += 1
            room.release()
            if answered == len(keys):
                all_in.set()

        inbox = nc.new_inbox()
        subscription = await nc.subscribe(f"{inbox}.*", cb=on_reply)
        try:
            async with asyncio.timeout(timeout):
                for n, key in enumerate(keys):
                    await room.acquire()
                    if not nc.is_connected:
                        raise RagwayError("unavailable", BUS_UNAVAILABLE)
                    body = b'{"last_by_subj":"$KV.%s.%s"}' % (self.name.encode(), key.encode())
                    await nc.publish(api, body, reply=f"{inbox}.{n}")
                while not all_in.is_set():
                    if not nc.is_connected:
                        raise RagwayError("unavailable", BUS_UNAVAILABLE)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(DISCONNECT_CHECK_S):
                            await all_in.wait()
        except TimeoutError:
            raise RagwayError(
                "unavailable", f"Reading {len(keys)} keys of {self.name} took over {timeout:g}s"
            ) from None
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        if failure:
            raise failure[0]
        return found

    async def put(self, key: str, value: bytes) -> None:
        await self.kv.put(key, value)

    async def claim(self, key: str, value: bytes) -> bool:
        """Create `key` with `value`; False when it exists (exactly one writer gets a key)."""
        try:
            await self.kv.create(key, value)
        except KeyWrongLastSequenceError:
            return False
        except KeyNotFoundError:
            # nats-py's create, on losing the race, reads the key back to see whether it
            # was deleted; in a cluster that read can miss the winner's write for a
            # moment. Either way another writer created it: the caller updates instead.
            return False
        return True

    async def update(
        self,
        key: str,
        decode: Callable[[bytes], T],
        change: Callable[[T], T | None],
        busy: RagwayError,
    ) -> tuple[T, T] | None:
        """Apply `change` to the key's value with compare-and-set, retrying when another
        writer got there first; (before, after), or None when the key does not exist.

        `after` is stored as JSON. `change` may raise to give up, or return None to leave
        the value as it is (then after is before). `busy` is raised when every attempt
        lost to another writer.
        """
        for _ in range(CAS_ATTEMPTS):
            found = await self.entry(key)
            if found is None:
                return None
            before = decode(found.value)
            after = change(before)
            if after is None:
                return before, before
            try:
                await self.kv.update(key, _encode(after), last=found.revision)
            except KeyWrongLastSequenceError:
                await asyncio.sleep(CAS_PAUSE_S)
                continue
            return before, after
        raise busy

    async def delete(self, key: str, revision: int | None = None) -> bool:
        """Delete `key` (only if it is still at `revision`, when given); False when it was not."""
        try:
            await self.kv.delete(key, last=revision)
        except APIError as exc:
            if exc.err_code in WRONG_LAST_SEQUENCE:
                return False
            raise
        return True

    async def purge(self, key: str) -> None:
        """Remove `key` and its history."""
        await self.kv.purge(key)

    async def follow(
        self, keys: str = ">"
    ) -> AsyncGenerator[tuple[str, bytes | None] | None, None]:
        """Every key matching `keys` (a subject filter: `>`, `title.u1.*`) with its latest
        value, then one None once all of those are in, then every change (value None:
        deleted), until the caller stops iterating.

        Not nats-py's `watch()`: it announces "all in" when the consumer's info says nothing
        is pending and nothing arrived yet, while messages the server already sent may still
        be in flight behind that answer (nats-io/nats.py#842): listings came back empty or
        short, mirrors started incomplete. A message's own `num_pending` will not do either:
        under concurrent updates it reaches 0 before keys rewritten meanwhile come (measured:
        18 of 20 keys). Here "all in" is when every key the stream held when asked has come
        (the stream's own list of subjects, one request), with whatever value it has by then.
        """
        stream = f"KV_{self.name}"
        prefix = f"$KV.{self.name}."
        try:
            info = await self.js.stream_info(stream, subjects_filter=prefix + keys)
        except NotFoundError:
            # the bucket's stream is missing: nats-server restarted (JetStream loading)
            raise RagwayError("unavailable", "The message bus is restarting; try again") from None
        waiting = set(info.state.subjects or ())
        arrived: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_message(msg: Msg) -> None:
            arrived.put_nowait(msg)

        subscription = await self.js.subscribe(
            prefix + keys,
            stream=stream,
            cb=on_message,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            inactive_threshold=60.0,
        )
        try:
            if not waiting:
                yield None
            while True:
                msg = await arrived.get()
                operation = msg.headers.get(KV_OP) if msg.headers else None
                deleted = operation in (KV_DEL, KV_PURGE) or not msg.data
                yield msg.subject[len(prefix) :], None if deleted else msg.data
                if waiting:
                    waiting.discard(msg.subject)
                    if not waiting:
                        yield None
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def latest(self, keys: str = ">", timeout: float = 10.0) -> dict[str, bytes]:
        """Every key matching `keys` with its latest value (deleted keys left out), in one
        pass over the bucket's stream (`follow` up to its "all in").

        A listing whose connection drops fails at once (`unavailable`): the ordered consumer
        would only go quiet, and the caller would wait out `timeout` for keys never coming."""
        nc = self.js._nc  # nats-py offers no public way back from the context to its connection
        reading = asyncio.ensure_future(self._read_latest(keys))
        try:
            async with asyncio.timeout(timeout):
                while not reading.done():
                    if not nc.is_connected:
                        raise RagwayError("unavailable", BUS_UNAVAILABLE)
                    await asyncio.wait((reading,), timeout=DISCONNECT_CHECK_S)
        except TimeoutError:
            # e.g. keys purged from the stream (not merely deleted) while it was read
            raise RagwayError(
                "unavailable", f"Listing {self.name} took over {timeout:g}s"
            ) from None
        finally:
            reading.cancel()  # a no-op once it is done; otherwise its aclose unsubscribes
        return reading.result()

    async def _read_latest(self, keys: str) -> dict[str, bytes]:
        values: dict[str, bytes] = {}
        async with contextlib.aclosing(self.follow(keys)) as changes:
            async for change in changes:
                if change is None:
                    return values
                key, value = change
                if value is None:
                    values.pop(key, None)
                else:
                    values[key] = value
        return values  # not reached: the changes never end before their "all in"


async def ensure_object_store(js: JetStreamContext, bucket: str, replicas: int = 1) -> ObjectStore:
    """Open object store `bucket`, creating it only when it does not exist (as `Bucket.open`)."""

    async def open_or_create() -> ObjectStore:
        try:
            return await js.object_store(bucket)
        except BucketNotFoundError:
            return await js.create_object_store(
                bucket,
                ObjectStoreConfig(bucket=bucket, replicas=replicas, storage=StorageType.FILE),
            )

    return await once_jetstream_answers(bucket, open_or_create)
