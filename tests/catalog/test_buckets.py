"""Opening, creating and writing KV buckets (`catalog.buckets.Bucket`) on a real JetStream."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType, StreamConfig
from nats.js.errors import BadBucketError, BucketNotFoundError

from catalog.buckets import Bucket
from common.errors import RagwayError


def a_name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def test_a_missing_bucket_is_created_on_disk_with_the_history_asked_for(nc: Client) -> None:
    js = nc.jetstream()
    name = a_name()
    with pytest.raises(BucketNotFoundError):
        await js.key_value(name)

    bucket = await Bucket.open(js, name, history=3)

    config = (await js.stream_info(f"KV_{name}")).config
    assert (config.max_msgs_per_subject, config.storage) == (3, StorageType.FILE)
    await bucket.put("k", b"v")
    assert await (await js.key_value(name)).get("k") is not None


async def test_an_existing_bucket_is_opened_with_its_settings_and_values_kept(nc: Client) -> None:
    js = nc.jetstream()
    name = a_name()
    kv = await js.create_key_value(
        KeyValueConfig(bucket=name, history=5, storage=StorageType.MEMORY)
    )
    await kv.put("k", b"kept")

    bucket = await Bucket.open(js, name, history=1)

    config = (await js.stream_info(f"KV_{name}")).config
    assert (config.max_msgs_per_subject, config.storage) == (5, StorageType.MEMORY)
    assert await bucket.get("k") == b"kept"


async def test_a_stream_that_is_not_a_usable_bucket_is_reported_not_created_over(
    nc: Client,
) -> None:
    js = nc.jetstream()
    name = a_name()
    # the bucket's stream exists but keeps no limit per key: nats-py refuses to open it
    await js.add_stream(StreamConfig(name=f"KV_{name}", subjects=[f"$KV.{name}.>"]))
    before = (await js.stream_info(f"KV_{name}")).config

    with pytest.raises(BadBucketError):
        await Bucket.open(js, name)

    assert (await js.stream_info(f"KV_{name}")).config == before


async def test_of_writers_claiming_one_key_exactly_one_wins(nc: Client) -> None:
    bucket = await Bucket.open(nc.jetstream(), a_name())

    won = await asyncio.gather(*(bucket.claim("k", str(i).encode()) for i in range(5)))

    assert sorted(won) == [False] * 4 + [True]
    assert await bucket.get("k") == str(won.index(True)).encode()


async def test_a_delete_at_a_stale_revision_is_refused(nc: Client) -> None:
    bucket = await Bucket.open(nc.jetstream(), a_name())
    await bucket.put("k", b"1")
    first = await bucket.entry("k")
    assert first is not None
    await bucket.put("k", b"2")

    assert not await bucket.delete("k", first.revision)
    assert await bucket.get("k") == b"2"
    assert await bucket.delete("k", first.revision + 1)
    assert await bucket.entry("k") is None


async def test_an_update_gives_before_and_after_and_none_for_a_missing_key(nc: Client) -> None:
    bucket = await Bucket.open(nc.jetstream(), a_name())
    await bucket.put("n", b"1")
    busy = RagwayError("unavailable", "busy")

    def increment(n: int) -> int:
        return n + 1

    assert await bucket.update("n", int, increment, busy) == (1, 2)
    assert await bucket.update("n", int, lambda n: None, busy) == (2, 2)
    assert await bucket.get("n") == b"2"
    assert await bucket.update("missing", int, increment, busy) is None
