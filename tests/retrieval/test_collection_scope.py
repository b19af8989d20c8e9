"""A collection is searched by its id on the chunks' payload: the payload follows every
change of the collection, and a payload that lags it never shows a file outside it."""

from __future__ import annotations

import asyncio
import time

from nats.aio.client import Client

from catalog.files import FileCatalog
from common.bus import Bus
from contracts import subjects
from contracts.auth import Ok
from contracts.knowledge import AccessControl, Knowledge, KnowledgeFileChange, KnowledgeRef
from contracts.retrieval import RetrievalResult
from retrieval.app import Retrieval
from retrieval.knowledge_store import KnowledgeStore
from tests.retrieval.helpers import (
    add,
    add_file,
    call,
    create,
    ingested,
    search,
    set_status,
    user,
    write_chunks,
)
from vectorstore.points import COLLECTIONS

BREAD = ["Sourdough bread needs a starter of flour and water fermented for several days."]
STARS = ["Neutron stars are the collapsed cores of massive stars after a supernova."]


async def collections_on_chunks(retrieval: Retrieval, file_id: str) -> list[list[str]]:
    return [
        hit.payload.get(COLLECTIONS, []) for hit in await retrieval.store.get_file_chunks(file_id)
    ]


def found(result: RetrievalResult) -> set[str]:
    return {hit.metadata["file_id"] for hit in result.groups[0].hits}


async def test_adding_a_file_tags_its_chunks_and_removing_it_untags_them_before_the_reply(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    knowledge = await create(mbus, owner, AccessControl())
    bread = await ingested(mbus, retrieval, catalog, owner, BREAD)
    assert await collections_on_chunks(retrieval, bread.id) == [[]]

    await add(mbus, owner, knowledge.id, bread.id)
    assert await collections_on_chunks(retrieval, bread.id) == [[knowledge.id]]
    assert found(await search(mbus, owner, knowledge.id, "sourdough")) == {bread.id}

    change = KnowledgeFileChange(principal=owner, knowledge_id=knowledge.id, file_id=bread.id)
    await call(mbus, subjects.KNOWLEDGE_FILE_REMOVE, change)
    assert await collections_on_chunks(retrieval, bread.id) == [[]]
    assert found(await search(mbus, owner, knowledge.id, "sourdough")) == set()


async def test_a_file_in_two_collections_stays_searchable_through_the_one_it_remains_in(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    kitchen = await create(mbus, owner, AccessControl(), name="Kitchen")
    pantry = await create(mbus, owner, AccessControl(), name="Pantry")
    bread = await ingested(mbus, retrieval, catalog, owner, BREAD)
    await add(mbus, owner, kitchen.id, bread.id)
    await add(mbus, owner, pantry.id, bread.id)
    assert await collections_on_chunks(retrieval, bread.id) == [sorted([kitchen.id, pantry.id])]

    ref = KnowledgeRef(principal=owner, knowledge_id=kitchen.id)
    assert await call(mbus, subjects.KNOWLEDGE_DELETE, ref) == Ok()

    assert await collections_on_chunks(retrieval, bread.id) == [[pantry.id]]
    assert found(await search(mbus, owner, pantry.id, "sourdough")) == {bread.id}


async def test_chunks_written_after_the_file_joined_carry_the_collection(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    knowledge = await create(mbus, owner, AccessControl())
    late = await add_file(catalog, owner, "stars.txt", status="processing")
    await add(mbus, owner, knowledge.id, late.id)

    await write_chunks(mbus, retrieval, late, STARS)
    await set_status(catalog, late.id, "completed")

    assert await collections_on_chunks(retrieval, late.id) == [[knowledge.id]]
    assert found(await search(mbus, owner, knowledge.id, "neutron stars")) == {late.id}


async def test_a_payload_claiming_a_file_the_collection_lacks_never_shows_it_and_is_rewritten(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    knowledge = await create(mbus, owner, AccessControl())
    bread = await ingested(mbus, retrieval, catalog, owner, BREAD)
    stars = await ingested(mbus, retrieval, catalog, owner, STARS)
    await add(mbus, owner, knowledge.id, bread.id)
    # as a crash between the bucket's change and the payload's write would leave it
    await retrieval.store.set_collections([stars.id], [knowledge.id])

    result = await search(mbus, owner, knowledge.id, "neutron stars supernova")
    assert found(result) == {bread.id}
    await retrieval.memberships.drain()
    assert await collections_on_chunks(retrieval, stars.id) == [[]]


async def test_chunks_missing_their_collections_get_them_when_the_mirror_starts(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    knowledge = await create(mbus, owner, AccessControl())
    bread = await ingested(mbus, retrieval, catalog, owner, BREAD)
    stars = await ingested(mbus, retrieval, catalog, owner, STARS)
    await add(mbus, owner, knowledge.id, bread.id)
    await add(mbus, owner, knowledge.id, stars.id)
    # a store written before chunks carried their collections
    await retrieval.store.set_collections([bread.id, stars.id], [])
    assert await retrieval.store.count_lacking([bread.id, stars.id], [knowledge.id]) == 2

    assert await retrieval.memberships.complete() >= 1

    assert await retrieval.store.count_lacking([bread.id, stars.id], [knowledge.id]) == 0


async def test_a_collection_changed_in_the_bucket_by_someone_else_is_followed(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus, module_nc: Client
) -> None:
    owner = user()
    knowledge = await create(mbus, owner, AccessControl())
    bread = await ingested(mbus, retrieval, catalog, owner, BREAD)
    await add(mbus, owner, knowledge.id, bread.id)

    # e.g. another replica of this service: only the bucket changes here
    elsewhere = await KnowledgeStore.open(module_nc.jetstream(), retrieval.settings.bucket_prefix)

    def unlink(current: Knowledge) -> Knowledge:
        current.data.file_ids = []
        return current

    await elsewhere.update(knowledge.id, unlink)

    deadline = time.monotonic() + 5
    while await collections_on_chunks(retrieval, bread.id) != [[]]:
        assert time.monotonic() < deadline, "the payload did not follow the bucket"
        await asyncio.sleep(0.02)
    assert found(await search(mbus, owner, knowledge.id, "sourdough")) == set()


async def test_hits_never_show_which_collections_hold_their_file(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner, other = user(), user()
    shared = await create(mbus, owner, None, name="Shared")  # readable by every user
    private = await create(mbus, owner, AccessControl(), name="Private")
    bread = await ingested(mbus, retrieval, catalog, owner, BREAD)
    await add(mbus, owner, shared.id, bread.id)
    await add(mbus, owner, private.id, bread.id)

    hits = (await search(mbus, other, shared.id, "sourdough")).groups[0].hits
    assert hits and all(COLLECTIONS not in hit.metadata for hit in hits)
    assert private.id not in str([hit.metadata for hit in hits])
