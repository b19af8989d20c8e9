"""A collection's files in bulk over NATS: pages and name search, batch add with an
outcome per file, and Open WebUI's incremental sync by content hash."""

from __future__ import annotations

from typing import Any

import msgspec

from catalog.files import FileCatalog
from common.bus import Bus
from contracts import subjects
from contracts.auth import Principal
from contracts.files import FileRecord
from contracts.knowledge import (
    AccessControl,
    KnowledgeFilesBatch,
    KnowledgeFilesQuery,
    KnowledgeListRequest,
    ManifestEntry,
    SyncCleanupRequest,
    SyncDiffRequest,
)
from retrieval.app import Retrieval
from tests.retrieval.helpers import add, add_file, call, create, error_code, get, until, user


async def batch(bus: Bus, who: Principal, knowledge_id: str, ids: list[str]) -> Any:
    message = KnowledgeFilesBatch(principal=who, knowledge_id=knowledge_id, file_ids=ids)
    return await call(bus, subjects.KNOWLEDGE_FILES_BATCH, message)


async def files_page(bus: Bus, who: Principal, knowledge_id: str, **kw: Any) -> Any:
    query = KnowledgeFilesQuery(principal=who, knowledge_id=knowledge_id, **kw)
    return await call(bus, subjects.KNOWLEDGE_FILES, query)


async def diff(bus: Bus, who: Principal, knowledge_id: str, manifest: list[ManifestEntry]) -> Any:
    request = SyncDiffRequest(principal=who, knowledge_id=knowledge_id, manifest=manifest)
    return await call(bus, subjects.KNOWLEDGE_SYNC_DIFF, request)


async def test_a_batch_adds_every_good_file_and_names_each_bad_one(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner, other = user(), user()
    collection = await create(mbus, owner, AccessControl())
    good = [await add_file(catalog, owner, name=f"doc{n}.md") for n in range(3)]
    pending = await add_file(catalog, owner, name="later.md", status="pending")
    failed = await add_file(catalog, owner, name="bad.pdf", status="failed", error="no text")
    theirs = await add_file(catalog, other, name="theirs.md")
    await add(mbus, owner, collection.id, good[0].id)
    ids = [f.id for f in good] + [pending.id, failed.id, theirs.id, "no-such-file", good[1].id]

    reply = await batch(mbus, owner, collection.id, ids)

    outcomes = {o.file_id: (o.status, o.error) for o in reply.results}
    assert outcomes[good[0].id] == ("unchanged", None)
    assert outcomes[good[1].id] == ("added", None) and outcomes[good[2].id] == ("added", None)
    assert outcomes[pending.id] == ("added", None)  # joins search once it is searchable
    assert outcomes[failed.id][0] == "failed" and "no text" in (outcomes[failed.id][1] or "")
    assert outcomes[theirs.id] == ("failed", "File not found")
    assert outcomes["no-such-file"] == ("failed", "File not found")
    assert len(reply.results) == 7  # one per distinct id
    assert reply.warnings is not None and len(reply.warnings.errors) == 3
    linked = (await get(mbus, owner, collection.id)).data.file_ids
    assert linked == [good[0].id, good[1].id, good[2].id, pending.id]


async def test_a_batch_of_a_thousand_files_is_one_call(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    collection = await create(mbus, owner, AccessControl())
    records = [await add_file(catalog, owner, name=f"f{n}.txt") for n in range(1000)]
    reply = await batch(mbus, owner, collection.id, [r.id for r in records])
    assert [o.status for o in reply.results] == ["added"] * 1000 and reply.warnings is None
    whole = await get(mbus, owner, collection.id)
    assert len(whole.data.file_ids) == 1000 and len(whole.files) == 1000

    # one more than a reply carries records of: answered without them, paged instead
    extra = await add_file(catalog, owner, name="extra.txt")
    added = await add(mbus, owner, collection.id, extra.id)
    assert added.files is msgspec.UNSET and added.file_count == 1001
    again = await get(mbus, owner, collection.id)
    assert again.files is msgspec.UNSET and again.file_count == 1001
    page = await files_page(mbus, owner, collection.id, limit=1000)
    assert page.total == 1001 and len(page.items) == 1000


async def test_a_batch_into_someone_elses_collection_is_refused_whole(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner, other = user(), user()
    private = await create(mbus, owner, AccessControl())
    public = await create(mbus, owner, None)
    mine = await add_file(catalog, other)
    assert await error_code(batch(mbus, other, private.id, [mine.id])) == "not_found"
    assert await error_code(batch(mbus, other, public.id, [mine.id])) == "forbidden"
    assert await error_code(batch(mbus, owner, public.id, [])) == "invalid"
    assert (await get(mbus, owner, public.id)).data.file_ids == []


async def test_a_collections_files_come_in_pages_searchable_by_name(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner, other = user(), user()
    collection = await create(mbus, owner, AccessControl())
    names = [f"report-{n}.md" for n in range(5)] + ["Budget 2025.xlsx", "notes.txt"]
    records = [await add_file(catalog, owner, name=name) for name in names]
    await batch(mbus, owner, collection.id, [r.id for r in records])
    await until(lambda: all(r.id in retrieval.known._latest for r in records))

    first = await files_page(mbus, owner, collection.id, skip=0, limit=3)
    rest = await files_page(mbus, owner, collection.id, skip=3, limit=30)
    assert (first.total, len(first.items), len(rest.items)) == (7, 3, 4)
    assert {f.id for f in first.items + rest.items} == {r.id for r in records}
    found = await files_page(mbus, owner, collection.id, query="REPORT")
    assert sorted(f.meta.name for f in found.items) == sorted(names[:5]) and found.total == 5
    budget = await files_page(mbus, owner, collection.id, query="budget")
    assert [f.meta.name for f in budget.items] == ["Budget 2025.xlsx"]
    assert await error_code(files_page(mbus, other, collection.id)) == "not_found"
    assert await error_code(files_page(mbus, owner, collection.id, limit=0)) == "invalid"


async def test_the_writable_listing_and_pages_of_collections(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner, reader = user(), user()
    shared = await create(mbus, owner, None)  # readable by all, writable by its owner
    own = await create(mbus, reader, AccessControl())
    writable = await call(
        mbus,
        subjects.KNOWLEDGE_LIST,
        KnowledgeListRequest(principal=reader, permission="write"),
    )
    ids = {k.id for k in writable.items}
    assert own.id in ids and shared.id not in ids
    page = await call(
        mbus,
        subjects.KNOWLEDGE_LIST,
        KnowledgeListRequest(principal=reader, skip=0, limit=1),
    )
    assert len(page.items) == 1 and page.total >= 2


def entry(record: FileRecord, path: str = "", checksum: str | None = None) -> ManifestEntry:
    return ManifestEntry(
        filename=record.meta.name, path=path, checksum=checksum or record.hash, size=1
    )


async def test_a_sync_diff_sorts_a_manifest_into_added_modified_deleted_and_unchanged(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    collection = await create(mbus, owner, AccessControl())
    same = await add_file(catalog, owner, name="same.md")
    changed = await add_file(catalog, owner, name="changed.md")
    gone = await add_file(catalog, owner, name="gone.md")
    await batch(mbus, owner, collection.id, [same.id, changed.id, gone.id])

    reply = await diff(
        mbus,
        owner,
        collection.id,
        [
            entry(same),
            entry(changed, checksum="f" * 64),
            ManifestEntry(filename="new.md", path="docs", checksum="e" * 64),
        ],
    )
    assert reply.unmodified_count == 1
    assert [(a.filename, a.path) for a in reply.added] == [("new.md", "docs")]
    assert [(m.filename, m.stale_file_id) for m in reply.modified] == [("changed.md", changed.id)]
    assert [(d.file_id, d.filename) for d in reply.deleted] == [(gone.id, "gone.md")]
    assert reply.mkdir == [] and reply.directory_map == {}


async def test_sync_cleanup_unlinks_stale_files_and_deletes_only_unshared_own_ones(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner, writer = user(), user()
    collection = await create(mbus, owner, AccessControl())
    other_collection = await create(mbus, owner, AccessControl())
    alone = await add_file(catalog, owner, name="alone.md")
    shared = await add_file(catalog, owner, name="shared.md")
    kept = await add_file(catalog, owner, name="kept.md")
    await batch(mbus, owner, collection.id, [alone.id, shared.id, kept.id])
    await add(mbus, owner, other_collection.id, shared.id)

    request = SyncCleanupRequest(
        principal=owner, knowledge_id=collection.id, file_ids=[alone.id, shared.id, "unknown"]
    )
    reply = await call(mbus, subjects.KNOWLEDGE_SYNC_CLEANUP, request)
    assert reply.status is True
    assert (await get(mbus, owner, collection.id)).data.file_ids == [kept.id]
    assert await catalog.get(alone.id) is None  # in no collection any more: deleted
    assert await catalog.get(shared.id) is not None  # still in another collection
    assert (await get(mbus, owner, other_collection.id)).data.file_ids == [shared.id]
    stranger = SyncCleanupRequest(principal=writer, knowledge_id=collection.id, file_ids=[kept.id])
    assert await error_code(call(mbus, subjects.KNOWLEDGE_SYNC_CLEANUP, stranger)) == "not_found"
