"""Opening, creating and writing KV buckets (`catalog.buckets.Bucket`) on a real JetStream."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, KeyValueConfig, StorageType, StreamConfig
from nats.js.errors import BadBucketError, BucketNotFoundError, ServiceUnavailableError

from catalog.buckets import Bucket, once_jetstream_answers
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


async def test_opening_waits_while_jetstream_answers_not_yet(nc: Client) -> None:
    # A JetStream nobody answers yet (a cluster still electing leaders): the same
    # "no responders" as an API prefix that no server serves.
    absent = nc.jetstream(prefix="$JS.forming.API")
    present = nc.jetstream()
    name = a_name()
    tries: list[str] = []

    async def attempt() -> Bucket:
        tries.append("try")
        return await Bucket.open(absent if len(tries) < 3 else present, name, within_s=0)

    bucket = await once_jetstream_answers(name, attempt, within_s=10)
    assert len(tries) == 3
    assert (await present.stream_info(f"KV_{bucket.name}")).config.name == f"KV_{name}"


async def test_a_jetstream_that_never_answers_fails_opening_after_the_bound(nc: Client) -> None:
    absent = nc.jetstream(prefix="$JS.forming.API")
    started = time.perf_counter()
    with pytest.raises(ServiceUnavailableError):
        await Bucket.open(absent, a_name(), within_s=0.3)
    assert 0.25 < time.perf_counter() - started < 3


async def test_a_pull_whose_consumer_is_not_there_yet_is_asked_again(nc: Client) -> None:
    # How a blob read meets a cluster where its new consumer cannot be reached yet: the
    # pull is answered "no responders" until the consumer exists.
    js = nc.jetstream()
    stream = a_name()
    await js.add_stream(name=stream, subjects=[f"{stream}.>"])
    for index in range(3):
        await js.publish(f"{stream}.m", str(index).encode())
    sub = await js.pull_subscribe_bind(consumer="late", stream=stream)

    async def created_late() -> None:
        await asyncio.sleep(0.3)
        await js.add_consumer(stream, ConsumerConfig(name="late", ack_policy=AckPolicy.NONE))

    creating = asyncio.create_task(created_late())
    msgs = await once_jetstream_answers("read", lambda: sub.fetch(3, timeout=5), within_s=5)
    await creating
    assert [msg.data for msg in msgs] == [b"0", b"1", b"2"]


async def test_get_many_reads_every_key_in_order_missing_and_deleted_as_none(nc: Client) -> None:
    bucket = await Bucket.open(nc.jetstream(), f"t{uuid.uuid4().hex[:10]}_many")
    keys = [f"k{n}" for n in range(700)]  # more than one window of reads in flight
    for key in keys:
        await bucket.put(key, key.encode())
    await bucket.put("k3", b"rewritten")
    await bucket.kv.delete("k5")
    await bucket.purge("k7")

    values = await bucket.get_many(["absent", *keys])

    assert values[0] is None
    expected = [key.encode() for key in keys]
    expected[3], expected[5], expected[7] = b"rewritten", None, None
    assert values[1:] == expected
    assert await bucket.get_many([]) == []
