"""Create-or-open JetStream KV buckets and object stores with ragway's conventions."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, ObjectStoreConfig, StorageType
from nats.js.errors import NoKeysError, NotFoundError
from nats.js.kv import KeyValue
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


async def kv_keys(kv: KeyValue) -> list[str]:
    """Every key of a bucket; [] when empty. Other failures must not read as "empty"."""
    try:
        return await kv.keys()
    except NoKeysError:
        return []
    except NotFoundError:
        # the listing's ephemeral consumer vanished: nats-server restarted during the call
        raise RagwayError("unavailable", "The message bus is restarting; try again") from None
