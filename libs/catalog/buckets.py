"""Create-or-open JetStream KV buckets and object stores with ragway's conventions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, KeyValueConfig, ObjectStoreConfig, StorageType
from nats.js.errors import NotFoundError
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, KeyValue
from nats.js.object_store import ObjectStore

from common.bus import BUS_UNAVAILABLE
from common.errors import RagwayError


async def ensure_kv(
    js: JetStreamContext, bucket: str, replicas: int = 1, history: int = 1
) -> KeyValue:
    """Open `bucket`, creating it (file storage) when missing."""
    try:
        return await js.key_value(bucket)
    except Exception:
        return await js.create_key_value(
            KeyValueConfig(
                bucket=bucket, history=history, replicas=replicas, storage=StorageType.FILE
            )
        )


async def ensure_object_store(js: JetStreamContext, bucket: str, replicas: int = 1) -> ObjectStore:
    try:
        return await js.object_store(bucket)
    except Exception:
        return await js.create_object_store(
            bucket, ObjectStoreConfig(bucket=bucket, replicas=replicas, storage=StorageType.FILE)
        )


async def kv_follow(
    js: JetStreamContext, bucket: str, keys: str = ">"
) -> AsyncGenerator[tuple[str, bytes | None] | None, None]:
    """Every key of a KV bucket matching `keys` (a subject filter: `>`, `title.u1.*`) with
    its latest value, then one None once all of those are in, then every change (value
    None: deleted), until the caller stops iterating.

    Not nats-py's `watch()`: it announces "all in" when the consumer's info says nothing
    is pending and nothing arrived yet, while messages the server already sent may still
    be in flight behind that answer (nats-io/nats.py#842): listings came back empty or
    short, mirrors started incomplete. A message's own `num_pending` will not do either:
    under concurrent updates it reaches 0 before keys rewritten meanwhile come (measured:
    18 of 20 keys). Here "all in" is when every key the stream held when asked has come
    (the stream's own list of subjects, one request), with whatever value it has by then.
    """
    stream = f"KV_{bucket}"
    prefix = f"$KV.{bucket}."
    try:
        held = (await js.stream_info(stream, subjects_filter=prefix + keys)).state.subjects
    except NotFoundError:
        # the bucket's stream is missing: nats-server restarted (JetStream loading)
        raise RagwayError("unavailable", "The message bus is restarting; try again") from None
    waiting = set(held or ())
    arrived: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_message(msg: Msg) -> None:
        arrived.put_nowait(msg)

    subscription = await js.subscribe(
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


# How often a listing looks whether the bus is still there while it waits for keys.
DISCONNECT_CHECK_S = 0.05


async def kv_latest(
    js: JetStreamContext, bucket: str, keys: str = ">", timeout: float = 10.0
) -> dict[str, bytes]:
    """Every key of a KV bucket matching `keys` with its latest value (deleted keys left
    out), in one pass over the bucket's stream (`kv_follow` up to its "all in").

    A listing whose connection drops fails at once (`unavailable`): the ordered consumer
    would only go quiet, and the caller would wait out `timeout` for keys never coming."""
    nc = js._nc  # nats-py offers no public way back from the context to its connection
    reading = asyncio.ensure_future(_read_latest(js, bucket, keys))
    try:
        async with asyncio.timeout(timeout):
            while not reading.done():
                if not nc.is_connected:
                    raise RagwayError("unavailable", BUS_UNAVAILABLE)
                await asyncio.wait((reading,), timeout=DISCONNECT_CHECK_S)
    except TimeoutError:
        # e.g. keys purged from the stream (not merely deleted) while it was read
        raise RagwayError("unavailable", f"Listing {bucket} took over {timeout:g}s") from None
    finally:
        reading.cancel()  # a no-op once it is done; otherwise its aclose unsubscribes
    return reading.result()


async def _read_latest(js: JetStreamContext, bucket: str, keys: str) -> dict[str, bytes]:
    values: dict[str, bytes] = {}
    async with contextlib.aclosing(kv_follow(js, bucket, keys)) as changes:
        async for change in changes:
            if change is None:
                return values
            key, value = change
            if value is None:
                values.pop(key, None)
            else:
                values[key] = value
    return values  # not reached: the changes never end before their "all in"
