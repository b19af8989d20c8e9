"""Create-or-open JetStream KV buckets and object stores with ragway's conventions."""

from __future__ import annotations

import asyncio
import contextlib

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, KeyValueConfig, ObjectStoreConfig, StorageType
from nats.js.errors import NotFoundError
from nats.js.kv import KV_DEL, KV_OP, KV_PURGE, KeyValue
from nats.js.object_store import ObjectStore

from common.errors import RagwayError

STREAM_NOT_FOUND = 10059  # JetStream's error code for a missing stream


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


async def kv_latest(
    js: JetStreamContext, bucket: str, keys: str = ">", timeout: float = 10.0
) -> dict[str, bytes]:
    """Every key of a KV bucket matching `keys` (a subject filter: `>`, `title.u1.*`) with
    its latest value, deleted keys left out, in one pass over the bucket's stream.

    Not `KeyValue.keys()`/`watch()` and a get per key: that is a round trip per key, and
    nats-py announces "that was all" when the consumer's info says nothing is pending and
    nothing arrived yet, while messages the server already sent may still be in flight
    behind that answer (nats-io/nats.py#842): a listing came back empty or short with keys
    present. Here the end is the message whose own metadata says nothing is left for the
    consumer; "no key at all" is asked of the stream first (the first matching message).
    """
    stream = f"KV_{bucket}"
    prefix = f"$KV.{bucket}."
    try:
        await js.get_msg(stream, seq=1, subject=prefix + keys, next=True)
    except NotFoundError as exc:
        if exc.err_code == STREAM_NOT_FOUND:
            # the bucket's stream is missing: nats-server restarted (JetStream loading)
            raise RagwayError("unavailable", "The message bus is restarting; try again") from None
        return {}  # no message matches: no such key was ever written
    values: dict[str, bytes] = {}
    read_all: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def on_message(msg: Msg) -> None:
        key = msg.subject[len(prefix) :]
        operation = msg.headers.get(KV_OP) if msg.headers else None
        if operation in (KV_DEL, KV_PURGE):
            values.pop(key, None)
        else:
            values[key] = msg.data
        if msg.metadata.num_pending == 0 and not read_all.done():
            read_all.set_result(None)

    subscription = await js.subscribe(
        prefix + keys,
        stream=stream,
        cb=on_message,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        inactive_threshold=60.0,
    )
    try:
        async with asyncio.timeout(timeout):
            await read_all
    except TimeoutError:
        # e.g. the matching keys were purged between the check and the subscription
        raise RagwayError("unavailable", f"Listing {bucket} took over {timeout:g}s") from None
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
    return values
