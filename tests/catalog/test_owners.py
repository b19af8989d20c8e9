"""Per-user indexes on a real JetStream: pages of one user's items, newest first, read
without anyone else's entries; files and chats listed through them."""

from __future__ import annotations

import uuid

import pytest
from nats.aio.client import Client

from catalog.buckets import Bucket
from catalog.chats import ChatStore
from catalog.files import FileCatalog, _encode
from catalog.owners import OwnerIndex
from common.errors import RagwayError
from contracts.files import FileData, FileMeta, FileRecord


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def an_index(nc: Client) -> OwnerIndex:
    return OwnerIndex(await Bucket.open(nc.jetstream(), f"{prefix()}_idx"), "files")


def a_record(file_id: str, user_id: str, created_at: int) -> FileRecord:
    return FileRecord(
        id=file_id,
        user_id=user_id,
        hash="",
        filename=f"{file_id}.txt",
        data=FileData(status="pending"),
        meta=FileMeta(name=f"{file_id}.txt", content_type="text/plain", size=1),
        created_at=created_at,
        updated_at=created_at,
    )


async def test_a_page_holds_the_users_items_newest_first_with_the_total(nc: Client) -> None:
    index = await an_index(nc)
    for n in range(7):
        await index.add("alice", 100 + n, f"a{n}")
    await index.add("bob", 999, "b0")

    first = await index.page("alice", 0, 3)
    assert (first.ids, first.total) == (["a6", "a5", "a4"], 7)
    last = await index.page("alice", 6, 3)
    assert (last.ids, last.total) == (["a0"], 7)
    assert await index.ids("bob") == ["b0"]
    assert (await index.page("carol", 0, 10)).total == 0


async def test_a_removed_item_is_gone_from_the_next_listing(nc: Client) -> None:
    index = await an_index(nc)
    await index.add("alice", 1, "x")
    await index.add("alice", 2, "y")
    await index.remove("alice", 2, "y")
    assert await index.ids("alice") == ["x"]


async def test_an_item_with_two_keys_is_listed_once_at_its_newest_and_the_old_key_purged(
    nc: Client,
) -> None:
    index = await an_index(nc)
    await index.add("alice", 5, "chat")  # as two racing moves could leave it
    await index.add("alice", 9, "chat")
    await index.add("alice", 7, "other")
    assert await index.ids("alice") == ["chat", "other"]
    assert (await index.page("alice", 0, 10)).total == 2
    keys = await index._keys("alice")
    assert index.key("alice", 5, "chat") not in keys


async def test_ids_that_are_not_key_tokens_are_refused(nc: Client) -> None:
    index = await an_index(nc)
    with pytest.raises(RagwayError) as exc:
        await index.add("alice.*", 1, "x")
    assert exc.value.code == "invalid"
    assert await index.ids("a.>") == []


async def test_files_are_listed_and_paged_per_owner_and_deleted_ones_leave(nc: Client) -> None:
    catalog = await FileCatalog.open(nc.jetstream(), prefix=prefix())
    for n in range(5):
        await catalog.create(a_record(f"mine{n}", "alice", 1000 + n))
    await catalog.create(a_record("theirs", "bob", 2000))
    await catalog.delete("mine4")

    assert [r.id for r in await catalog.list_for("alice")] == ["mine3", "mine2", "mine1", "mine0"]
    page, total = await catalog.page_for("alice", 1, 2)
    assert ([r.id for r in page], total) == (["mine2", "mine1"], 4)
    assert [r.id for r in await catalog.list_for("bob")] == ["theirs"]


async def test_files_written_before_the_index_existed_are_indexed_once_opened(
    nc: Client,
) -> None:
    name = prefix()
    records = await Bucket.open(nc.jetstream(), f"{name}_files")
    for n in range(3):  # as an earlier release wrote them: records only
        await records.kv.create(f"old{n}", _encode(a_record(f"old{n}", "alice", 10 + n)))
    catalog = await FileCatalog.open(nc.jetstream(), prefix=name)
    assert [r.id for r in await catalog.list_for("alice")] == ["old2", "old1", "old0"]


async def test_a_chats_page_comes_from_the_order_index_and_updates_keep_one_entry(
    nc: Client,
) -> None:
    store = await ChatStore.open(nc.jetstream(), prefix=prefix())
    chats = [await store.create("dana", {"title": f"c{n}"}) for n in range(4)]
    for chat in chats:
        await store.merge("dana", chat.id, {"title": f"renamed {chat.id[:4]}"})
    page = await store.list("dana", page=1)
    assert {s.id for s in page} == {c.id for c in chats}
    assert all(s.title.startswith("renamed") for s in page)
    assert (await store._order.page("dana", 0, 100)).total == 4
    await store.delete("dana", chats[0].id)
    assert len(await store.list("dana", page=1)) == 3
    assert await store.list("dana", page=2) == []


async def test_chat_search_matches_titles_in_any_case_for_one_user_only(nc: Client) -> None:
    store = await ChatStore.open(nc.jetstream(), prefix=prefix())
    wanted = await store.create("erin", {"title": "Quarterly REPORT draft"})
    await store.create("erin", {"title": "lunch"})
    await store.create("fred", {"title": "report of fred"})
    found = await store.search("erin", "report")
    assert [s.id for s in found] == [wanted.id]
    assert await store.search("erin", "nothing like it") == []


async def test_chats_written_before_the_order_index_are_paged_once_opened(nc: Client) -> None:
    name = prefix()
    old = await ChatStore.open(nc.jetstream(), prefix=name)
    chat = await old.create("gus", {"title": "old"})
    await old._bucket.purge(old._order.key("gus", chat.updated_at, chat.id))
    await old._bucket.purge("backfilled.order")
    reopened = await ChatStore.open(nc.jetstream(), prefix=name)
    assert [s.id for s in await reopened.list("gus", page=1)] == [chat.id]
