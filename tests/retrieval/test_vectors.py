"""Vector writes from ingestion workers, content reuse, and deleting files, over NATS."""

from __future__ import annotations

import pytest

from catalog.files import FileCatalog
from common.bus import Bus
from common.errors import RagwayError
from contracts import subjects
from contracts.access import AccessControl
from contracts.auth import Ok, Principal
from contracts.files import DeleteFileRequest
from contracts.retrieval import (
    CopyFileVectors,
    FileVectorsRef,
    RetrievalQuery,
    RetrievalResult,
    ScopeItem,
)
from retrieval.app import Retrieval
from tests.retrieval.helpers import (
    add,
    add_file,
    create,
    error_code,
    get,
    ingested,
    search,
    set_status,
    user,
    write_chunks,
)


async def search_file(bus: Bus, who: Principal, file_id: str, text: str) -> RetrievalResult:
    request = RetrievalQuery(principal=who, query=text, items=[ScopeItem(type="file", id=file_id)])
    result: RetrievalResult = await bus.call(subjects.RETRIEVAL_QUERY, request, timeout=10)
    return result


TEXTS = [
    "Glaciers carve U-shaped valleys as they slowly move downhill.",
    "A violin has four strings tuned in perfect fifths.",
    "Honeybees communicate the location of flowers with a waggle dance.",
]


async def test_writing_the_same_chunks_twice_leaves_no_duplicates(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    record = await add_file(catalog, owner, status="processing")

    first = await write_chunks(mbus, retrieval, record, TEXTS, metadata={"page": 1})
    second = await write_chunks(mbus, retrieval, record, TEXTS, metadata={"page": 1})

    assert first.count == second.count == 3
    assert await retrieval.store.count(record.id) == 3
    chunks = await retrieval.store.get_file_chunks(record.id)
    assert chunks[0].payload["owner"] == owner.id and chunks[0].payload["page"] == 1


async def test_copying_reuses_the_stored_vectors_under_the_new_file_owner_and_name(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = user(), user()
    source = await ingested(mbus, retrieval, catalog, alice, TEXTS, name="nature.txt")
    target = await add_file(catalog, bob, "copy.txt", status="processing")

    def no_embedding(*args: object) -> None:
        raise AssertionError("copying must not embed again")

    # A tripwire, not a stand-in: copying must work without the model being called.
    for method in ("embed_documents", "sparse_documents"):
        monkeypatch.setattr(retrieval.embedder, method, no_embedding)
    copied = await mbus.call(
        subjects.VECTORS_COPY,
        CopyFileVectors(
            source_file_id=source.id, target_file_id=target.id, owner=bob.id, name="copy.txt"
        ),
        timeout=10,
    )
    monkeypatch.undo()

    assert copied.count == 3
    assert await retrieval.store.count(target.id) == 3
    assert await retrieval.store.count(source.id) == 3
    chunks = await retrieval.store.get_file_chunks(target.id)
    assert [c.text for c in chunks] == TEXTS
    assert {(c.payload["owner"], c.payload["name"]) for c in chunks} == {(bob.id, "copy.txt")}
    await set_status(catalog, target.id, "completed")
    found = await search_file(mbus, bob, target.id, "violin strings")
    assert found.groups[0].hits[0].text == TEXTS[1]
    assert {hit.metadata["file_id"] for hit in found.groups[0].hits} == {target.id}
    assert await error_code(search_file(mbus, bob, source.id, "violin strings")) == "not_found"


async def test_copying_from_a_file_without_vectors_is_not_found(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    target = await add_file(catalog, owner, status="processing")
    request = CopyFileVectors(
        source_file_id="no-such-file", target_file_id=target.id, owner=owner.id, name="x"
    )

    with pytest.raises(RagwayError) as missing:
        await mbus.call(subjects.VECTORS_COPY, request, timeout=10)

    assert missing.value.code == "not_found"
    assert await retrieval.store.count(target.id) == 0


async def test_deleting_vectors_of_a_file_removes_only_that_file(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    gone = await ingested(mbus, retrieval, catalog, owner, TEXTS)
    kept = await ingested(mbus, retrieval, catalog, owner, TEXTS)

    deleted = await mbus.call(subjects.VECTORS_DELETE, FileVectorsRef(file_id=gone.id), timeout=10)

    assert deleted.count == 3
    assert await retrieval.store.count(gone.id) == 0
    assert await retrieval.store.count(kept.id) == 3


async def test_deleting_a_file_removes_its_vectors_record_and_collection_links(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner, other = user(), user()
    record = await ingested(mbus, retrieval, catalog, owner, TEXTS)
    neighbour = await ingested(mbus, retrieval, catalog, owner, TEXTS[:1])
    knowledge = await create(mbus, owner, None)
    await add(mbus, owner, knowledge.id, record.id)
    await add(mbus, owner, knowledge.id, neighbour.id)

    async def delete_as(who: Principal) -> Ok:
        request = DeleteFileRequest(principal=who, file_id=record.id)
        result: Ok = await mbus.call(subjects.FILES_DELETE, request, timeout=10)
        return result

    with pytest.raises(RagwayError) as denied:
        await delete_as(other)
    assert denied.value.code == "not_found"
    assert await retrieval.store.count(record.id) == 3

    assert await delete_as(owner) == Ok()

    assert await retrieval.store.count(record.id) == 0
    assert await catalog.get(record.id) is None
    assert (await get(mbus, owner, knowledge.id)).data.file_ids == [neighbour.id]
    hits = (await search(mbus, other, knowledge.id, "glaciers valleys")).groups[0].hits
    assert {hit.metadata["file_id"] for hit in hits} == {neighbour.id}
    with pytest.raises(RagwayError) as again:
        await delete_as(owner)
    assert again.value.code == "not_found"


async def test_a_private_collection_cannot_be_used_to_reach_files_by_another_user(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner, other = user(), user()
    record = await ingested(mbus, retrieval, catalog, owner, TEXTS)
    knowledge = await create(mbus, owner, AccessControl())
    await add(mbus, owner, knowledge.id, record.id)

    with pytest.raises(RagwayError) as denied:
        await search(mbus, other, knowledge.id, "violin strings")
    assert denied.value.code == "not_found"


async def test_vectors_for_a_file_without_a_record_are_refused_and_not_kept(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    record = await add_file(catalog, owner, status="processing")
    await catalog.delete(record.id)

    with pytest.raises(RagwayError) as refused:
        await write_chunks(mbus, retrieval, record, TEXTS)

    assert refused.value.code == "not_found"
    assert await retrieval.store.count(record.id) == 0
