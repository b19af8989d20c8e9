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


async def kv_latest(js: JetStreamContext, bucket: str, timeout: float = 10.0) -> dict[str, bytes]:
    """Every key of a KV bucket with its latest value (deleted keys left out), in one pass.

    Not `KeyValue.keys()` and a get per key: that is a round trip per key, and nats-py's
    keys()/watch() may announce "that was all" before messages it already received are
    handled (nats-io/nats.py#842), so a listing could come back empty with keys present.
    Here the end is the message whose own metadata says nothing is left for the consumer,
    and an empty bucket is known from its stream's state before subscribing.
    """
    stream = f"KV_{bucket}"
    prefix = f"$KV.{bucket}."
    try:
        if not (await js.stream_info(stream)).state.messages:
            return {}
    except NotFoundError:
        # the bucket's stream is missing: nats-server restarted (JetStream still loading)
        raise RagwayError("unavailable", "The message bus is restarting; try again") from None
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
        prefix + ">",
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
        if not (await js.stream_info(stream)).state.messages:
            return {}  # emptied meanwhile: nothing was left to deliver
        raise RagwayError("unavailable", f"Listing {bucket} took over {timeout:g}s") from None
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
    return values
