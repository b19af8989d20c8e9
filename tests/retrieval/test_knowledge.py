"""Knowledge collections over NATS: access_control, file links, and search through them."""

from __future__ import annotations

import asyncio

import msgspec

from catalog.files import FileCatalog
from common.bus import Bus
from contracts import subjects
from contracts.access import PUBLIC_READ, AccessControl, AccessIds
from contracts.auth import Ok
from contracts.knowledge import (
    KnowledgeFileChange,
    KnowledgeForm,
    KnowledgeListRequest,
    KnowledgeRef,
    KnowledgeReply,
    KnowledgeUpdate,
)
from retrieval.app import Retrieval
from tests.retrieval.helpers import (
    add,
    add_file,
    call,
    create,
    error_code,
    get,
    ingested,
    search,
    set_status,
    user,
    write_chunks,
)

BREAD = ["Sourdough bread needs a starter of flour and water fermented for several days."]
STARS = ["Neutron stars are the collapsed cores of massive stars after a supernova."]


async def test_null_and_empty_access_control_stay_distinct_on_the_wire(
    retrieval: Retrieval, mbus: Bus
) -> None:
    owner = user()
    principal = msgspec.to_builtins(owner)
    private = AccessControl(read=AccessIds(), write=AccessIds())
    for access, control, grants in (
        (', "access_control": null', None, [PUBLIC_READ]),
        (', "access_control": {}', private, []),
        ("", private, []),  # absent: private (Open WebUI 0.9+), not public
    ):
        raw = f'{{"principal": {msgspec.json.encode(principal).decode()},'
        raw += f' "form": {{"name": "K"{access}}}}}'
        data = await mbus.call_raw(subjects.KNOWLEDGE_CREATE, raw.encode(), timeout=10)
        created = msgspec.json.decode(data, type=KnowledgeReply)
        assert (created.access_control, created.access_grants) == (control, grants), access
        again = await get(mbus, owner, created.id)
        assert (again.access_control, again.access_grants) == (control, grants)


async def test_a_private_collection_is_not_found_for_others_and_readable_by_admins(
    retrieval: Retrieval, mbus: Bus
) -> None:
    owner, other = user(), user()
    private = await create(mbus, owner, AccessControl())

    assert await error_code(get(mbus, other, private.id)) == "not_found"
    assert await error_code(search(mbus, other, private.id, "bread")) == "not_found"
    listed = await call(mbus, subjects.KNOWLEDGE_LIST, KnowledgeListRequest(principal=other))
    assert private.id not in {item.id for item in listed.items}
    admin_view = await get(mbus, user("admin"), private.id)
    assert admin_view.write_access is True


async def test_a_public_collection_is_readable_and_searchable_by_all_but_writable_by_its_owner(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner, other = user(), user()
    public = await create(mbus, owner, None)
    bread = await ingested(mbus, retrieval, catalog, owner, BREAD, name="bread.md")
    await add(mbus, owner, public.id, bread.id)

    seen = await get(mbus, other, public.id)
    assert [f.id for f in seen.files] == [bread.id] and seen.write_access is False
    hits = (await search(mbus, other, public.id, "sourdough starter")).groups[0].hits
    assert hits[0].metadata["file_id"] == bread.id and hits[0].metadata["source"] == "bread.md"
    listed = await call(mbus, subjects.KNOWLEDGE_LIST, KnowledgeListRequest(principal=other))
    assert public.id in {item.id for item in listed.items}

    theirs = await add_file(catalog, other)
    assert await error_code(add(mbus, other, public.id, theirs.id)) == "forbidden"
    form = KnowledgeForm(name="Hijacked", access_control=None)
    update = KnowledgeUpdate(principal=other, knowledge_id=public.id, form=form)
    assert await error_code(call(mbus, subjects.KNOWLEDGE_UPDATE, update)) == "forbidden"
    ref = KnowledgeRef(principal=other, knowledge_id=public.id)
    assert await error_code(call(mbus, subjects.KNOWLEDGE_DELETE, ref)) == "forbidden"
    assert (await get(mbus, owner, public.id)).name == "Kitchen"


async def test_grants_let_named_users_read_or_write_and_nobody_else(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner, reader, writer, stranger = user(), user(), user(), user()
    access = AccessControl(
        read=AccessIds(user_ids=[reader.id]), write=AccessIds(user_ids=[writer.id])
    )
    shared = await create(mbus, owner, access)

    writers_file = await ingested(mbus, retrieval, catalog, writer, STARS, name="stars.txt")
    added = await add(mbus, writer, shared.id, writers_file.id)
    assert added.data.file_ids == [writers_file.id]

    hits = (await search(mbus, reader, shared.id, "supernova collapsed core")).groups[0].hits
    assert hits[0].metadata["file_id"] == writers_file.id
    assert (await get(mbus, reader, shared.id)).write_access is False
    readers_file = await add_file(catalog, reader)
    assert await error_code(add(mbus, reader, shared.id, readers_file.id)) == "forbidden"
    assert await error_code(get(mbus, stranger, shared.id)) == "not_found"
    assert await error_code(search(mbus, stranger, shared.id, "stars")) == "not_found"


async def test_adding_a_file_you_may_not_read_is_not_found(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner, other = user(), user()
    mine = await create(mbus, owner, AccessControl())
    theirs = await ingested(mbus, retrieval, catalog, other, BREAD)

    assert await error_code(add(mbus, owner, mine.id, theirs.id)) == "not_found"
    assert (await get(mbus, owner, mine.id)).data.file_ids == []


async def test_a_file_added_while_processing_joins_search_when_it_completes(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    knowledge = await create(mbus, owner, AccessControl())
    done = await ingested(mbus, retrieval, catalog, owner, BREAD)
    late = await add_file(catalog, owner, "stars.txt", status="processing")
    await add(mbus, owner, knowledge.id, done.id)
    added = await add(mbus, owner, knowledge.id, late.id)
    assert added.data.file_ids == [done.id, late.id]

    before = (await search(mbus, owner, knowledge.id, "neutron stars")).groups[0].hits
    assert {hit.metadata["file_id"] for hit in before} == {done.id}

    await write_chunks(mbus, retrieval, late, STARS)
    await set_status(catalog, late.id, "completed")
    after = (await search(mbus, owner, knowledge.id, "neutron stars")).groups[0].hits
    assert after[0].metadata["file_id"] == late.id


async def test_remove_reset_and_delete_change_only_the_collection_and_the_files_stay(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    knowledge = await create(mbus, owner, AccessControl())
    bread = await ingested(mbus, retrieval, catalog, owner, BREAD)
    stars = await ingested(mbus, retrieval, catalog, owner, STARS)
    await add(mbus, owner, knowledge.id, bread.id)
    await add(mbus, owner, knowledge.id, stars.id)
    again = await add(mbus, owner, knowledge.id, stars.id)
    assert again.data.file_ids == [bread.id, stars.id]

    change = KnowledgeFileChange(principal=owner, knowledge_id=knowledge.id, file_id=bread.id)
    removed = await call(mbus, subjects.KNOWLEDGE_FILE_REMOVE, change)
    assert removed.data.file_ids == [stars.id] and [f.id for f in removed.files] == [stars.id]
    hits = (await search(mbus, owner, knowledge.id, "sourdough bread")).groups[0].hits
    assert {hit.metadata["file_id"] for hit in hits} == {stars.id}

    ref = KnowledgeRef(principal=owner, knowledge_id=knowledge.id)
    reset = await call(mbus, subjects.KNOWLEDGE_RESET, ref)
    assert reset.data.file_ids == [] and reset.files == []
    assert (await search(mbus, owner, knowledge.id, "stars")).groups[0].hits == []

    await add(mbus, owner, knowledge.id, bread.id)
    assert await call(mbus, subjects.KNOWLEDGE_DELETE, ref) == Ok()
    assert await error_code(get(mbus, owner, knowledge.id)) == "not_found"

    for record in (bread, stars):
        assert await catalog.get(record.id) is not None
        assert await retrieval.store.count(record.id) == 1


async def test_concurrent_adds_to_one_collection_all_land(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    knowledge = await create(mbus, owner, AccessControl())
    records = [await add_file(catalog, owner, f"f{i}.txt") for i in range(8)]

    await asyncio.gather(*(add(mbus, owner, knowledge.id, r.id) for r in records))

    stored = await get(mbus, owner, knowledge.id)
    assert sorted(stored.data.file_ids) == sorted(r.id for r in records)
