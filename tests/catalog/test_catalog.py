"""File records and streamed blobs on a real JetStream."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client

from catalog.files import FileCatalog, now
from common.errors import RagwayError
from contracts.files import FileData, FileMeta, FileRecord


@pytest.fixture
async def catalog(nc: Client) -> FileCatalog:
    return await FileCatalog.open(nc.jetstream(), prefix=f"t{uuid.uuid4().hex[:10]}")


def a_record(file_id: str, user_id: str = "u1") -> FileRecord:
    return FileRecord(
        id=file_id,
        user_id=user_id,
        hash="",
        filename="a.txt",
        data=FileData(status="pending"),
        meta=FileMeta(name="a.txt", content_type="text/plain", size=3),
        created_at=now(),
        updated_at=now(),
    )


async def pieces(data: bytes, size: int = 10_000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_a_streamed_blob_comes_back_identical_with_its_sha256(catalog: FileCatalog) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    info = await catalog.blobs.put_stream("blob/x", pieces(data))
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert await catalog.blobs.get_bytes("blob/x") == data


async def test_reading_a_blob_is_fast_enough_to_feed_ingestion(catalog: FileCatalog) -> None:
    data = os.urandom(20 * 1024 * 1024)
    await catalog.blobs.put_stream("blob/big", pieces(data, 256 * 1024))
    started = time.perf_counter()
    total = 0
    async for piece in catalog.blobs.get_stream("blob/big"):
        total += len(piece)
    elapsed = time.perf_counter() - started
    assert total == len(data)
    assert elapsed < 10, f"reading 20 MiB took {elapsed:.1f}s"


async def test_reading_blobs_leaves_no_consumer_behind(catalog: FileCatalog, nc: Client) -> None:
    # Thousands of files ingested at once would otherwise hit the stream's consumer limit.
    await catalog.blobs.put_bytes("blob/read-me", b"some text" * 1000)
    for _ in range(5):
        assert await catalog.blobs.get_bytes("blob/read-me") == b"some text" * 1000
    info = await nc.jetstream().stream_info(catalog.blobs._stream)
    assert info.state.consumer_count == 0


async def test_an_oversized_blob_is_refused_and_leaves_nothing(catalog: FileCatalog) -> None:
    with pytest.raises(RagwayError) as exc:
        await catalog.blobs.put_stream("blob/too-big", pieces(b"x" * 50_000), max_size=20_000)
    assert exc.value.code == "too_large"
    with pytest.raises(RagwayError) as missing:
        await catalog.blobs.get_bytes("blob/too-big")
    assert missing.value.code == "not_found"


async def test_concurrent_record_updates_are_all_applied(catalog: FileCatalog) -> None:
    await catalog.create(a_record("f1"))

    def bump(record: FileRecord) -> FileRecord:
        record.data.chunks_done += 1
        return record

    await asyncio.gather(*(catalog.update("f1", bump) for _ in range(20)))
    record = await catalog.require("f1")
    assert record.data.chunks_done == 20


async def test_deleting_a_file_removes_record_blob_and_hash(catalog: FileCatalog) -> None:
    record = a_record("f2")
    record.hash = "abc"
    await catalog.create(record)
    await catalog.blobs.put_bytes("blob/f2", b"hello")
    await catalog.remember_hash("abc", "f2")
    await catalog.delete("f2")
    assert await catalog.get("f2") is None
    assert await catalog.file_with_hash("abc") is None
    with pytest.raises(RagwayError):
        await catalog.blobs.get_bytes("blob/f2")


async def test_listing_returns_only_the_owners_files(catalog: FileCatalog) -> None:
    await catalog.create(a_record("mine1", "alice"))
    await catalog.create(a_record("theirs", "bob"))
    await catalog.create(a_record("mine2", "alice"))
    assert {r.id for r in await catalog.list_for("alice")} == {"mine1", "mine2"}


async def test_an_id_that_is_not_a_valid_key_is_simply_not_found(catalog: FileCatalog) -> None:
    assert await catalog.get("../etc/passwd") is None
    assert await catalog.get("a.b.>") is None


async def test_watching_a_record_sees_its_changes(catalog: FileCatalog) -> None:
    await catalog.create(a_record("w1"))
    seen: list[str] = []

    async def follow() -> None:
        async for record in catalog.watch("w1"):
            assert record is not None
            seen.append(record.data.status)
            if record.data.status == "completed":
                return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.1)

    def complete(record: FileRecord) -> FileRecord:
        record.data.status = "completed"
        return record

    await catalog.update("w1", complete)
    await asyncio.wait_for(task, 5)
    assert seen[0] == "pending" and seen[-1] == "completed"


async def test_listings_under_concurrent_load_never_read_a_full_bucket_as_empty(
    catalog: FileCatalog,
) -> None:
    for n in range(5):
        await catalog.create(a_record(f"busy-{n}"))
    listings = await asyncio.gather(*(catalog.list_all() for _ in range(60)))
    assert {len(listing) for listing in listings} == {5}


async def test_a_listing_holds_each_records_latest_version_and_no_deleted_one(
    catalog: FileCatalog,
) -> None:
    assert await catalog.list_all() == []  # an empty bucket
    for n in range(3):
        await catalog.create(a_record(f"l{n}"))

    def complete(record: FileRecord) -> FileRecord:
        record.data.status = "completed"
        return record

    await catalog.update("l1", complete)
    await catalog.delete("l2")

    listed = {record.id: record.data.status for record in await catalog.list_all()}
    assert listed == {"l0": "pending", "l1": "completed"}
    await catalog.delete("l0")
    await catalog.delete("l1")
    assert await catalog.list_all() == []  # only deletion markers left


async def test_listings_while_records_change_always_hold_every_record(catalog: FileCatalog) -> None:
    for n in range(20):
        await catalog.create(a_record(f"c{n}"))

    def touched(record: FileRecord) -> FileRecord:
        record.data.chunks_done += 1
        return record

    async def churn() -> None:
        for _ in range(5):
            await asyncio.gather(*(catalog.update(f"c{n}", touched) for n in range(20)))

    listings, _ = await asyncio.gather(
        asyncio.gather(*(catalog.list_all() for _ in range(20))), churn()
    )
    assert [len(listing) for listing in listings] == [20] * 20
