"""The mirror of settled file records that the scope check reads instead of the bucket."""

from __future__ import annotations

import pytest

from catalog.files import FileCatalog
from common.bus import Bus
from common.errors import RagwayError
from contracts import subjects
from contracts.auth import Principal
from contracts.files import DeleteFileRequest
from contracts.retrieval import RetrievalQuery, RetrievalResult, ScopeItem
from retrieval.app import Retrieval
from retrieval.known_files import KnownFiles
from tests.retrieval.helpers import add_file, ingested, set_status, until, user

TEXTS = ["The lighthouse keeper lights the lamp.", "Sourdough needs a starter."]


async def search(bus: Bus, owner: Principal, file_id: str) -> RetrievalResult:
    return await bus.call(
        subjects.RETRIEVAL_QUERY,
        RetrievalQuery(principal=owner, query="lamp", items=[ScopeItem(type="file", id=file_id)]),
        timeout=10,
    )


async def test_only_settled_records_are_mirrored_and_a_settled_one_as_it_changes(
    retrieval: Retrieval, catalog: FileCatalog
) -> None:
    record = await add_file(catalog, user(), status="processing")
    done = await add_file(catalog, user(), status="completed")
    await until(lambda: done.id in retrieval.known)
    assert record.id not in retrieval.known

    await set_status(catalog, record.id, "failed", error="unreadable")
    await until(lambda: record.id in retrieval.known)
    mirrored = await retrieval.known.get(record.id)
    assert mirrored is not None and mirrored.data.error == "unreadable"


async def test_a_record_deleted_elsewhere_leaves_the_mirror_and_the_file_is_not_found(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    record = await ingested(mbus, retrieval, catalog, owner, TEXTS)
    await until(lambda: record.id in retrieval.known)
    assert (await search(mbus, owner, record.id)).groups[0].hits

    await catalog.delete(record.id)  # e.g. by another replica of this service

    await until(lambda: record.id not in retrieval.known)
    with pytest.raises(RagwayError) as missing:
        await search(mbus, owner, record.id)
    assert missing.value.code == "not_found"


async def test_a_file_deleted_through_this_service_is_not_found_by_the_very_next_query(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    record = await ingested(mbus, retrieval, catalog, owner, TEXTS)
    await until(lambda: record.id in retrieval.known)

    await mbus.call(
        subjects.FILES_DELETE, DeleteFileRequest(principal=owner, file_id=record.id), timeout=10
    )

    assert record.id not in retrieval.known
    with pytest.raises(RagwayError) as missing:
        await search(mbus, owner, record.id)
    assert missing.value.code == "not_found"


async def test_a_file_the_watch_has_not_delivered_yet_is_read_from_the_bucket(
    catalog: FileCatalog,
) -> None:
    known = KnownFiles(catalog)  # not following: nothing mirrored, every read goes through
    record = await add_file(catalog, user(), status="completed")
    found = await known.get(record.id)
    assert found is not None and found.id == record.id
    assert record.id not in known
    assert await known.get("no-such-file") is None


async def test_a_listing_follows_every_record_and_leaves_out_deleted_ones(
    retrieval: Retrieval, catalog: FileCatalog
) -> None:
    owner = user()
    pending = await add_file(catalog, owner, status="processing")
    done = await add_file(catalog, owner, status="completed")
    gone = await add_file(catalog, owner, status="completed")
    await until(lambda: done.id in retrieval.known and gone.id in retrieval.known)
    await catalog.delete(gone.id)
    await until(lambda: gone.id not in retrieval.known)

    listed = await retrieval.known.listing([pending.id, gone.id, done.id])
    assert [(r.id, r.data.status) for r in listed] == [
        (pending.id, "processing"),
        (done.id, "completed"),
    ]
    await set_status(catalog, pending.id, "completed")
    await until(lambda: pending.id in retrieval.known)
    listed = await retrieval.known.listing([pending.id])
    assert listed[0].data.status == "completed"
