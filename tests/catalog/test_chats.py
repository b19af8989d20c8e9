"""Chat listings on a real JetStream: one user's summaries, complete under concurrent writes."""

from __future__ import annotations

import asyncio
import uuid

from nats.aio.client import Client

from catalog.chats import ChatStore


async def open_store(nc: Client) -> ChatStore:
    return await ChatStore.open(nc.jetstream(), prefix=f"t{uuid.uuid4().hex[:10]}")


async def test_a_listing_holds_exactly_the_users_chats(nc: Client) -> None:
    store = await open_store(nc)
    assert await store.list("alice") == []  # nothing written at all

    mine = [await store.create("alice", {"title": f"a{n}"}) for n in range(3)]
    await store.create("bob", {"title": "not yours"})
    await store.delete("alice", mine[1].id)

    assert {s.id for s in await store.list("alice")} == {mine[0].id, mine[2].id}
    assert await store.list("carol") == []  # other users' keys exist, none of hers


async def test_listings_while_chats_change_always_hold_every_chat(nc: Client) -> None:
    store = await open_store(nc)
    chats = [await store.create("dana", {"title": f"c{n}"}) for n in range(25)]

    async def retitle() -> None:
        for round_no in range(3):
            await asyncio.gather(
                *(store.merge("dana", chat.id, {"title": f"r{round_no}"}) for chat in chats)
            )

    listings, _ = await asyncio.gather(
        asyncio.gather(*(store.list("dana") for _ in range(20))), retitle()
    )
    assert all(len(listing) == 25 for listing in listings)


def turn(text: str, reply: str) -> dict[str, object]:
    """A chat body as Open WebUI's UI stores one: a history of two messages."""
    return {
        "title": "New Chat",
        "history": {
            "currentId": "m2",
            "messages": {
                "m1": {"id": "m1", "role": "user", "content": text, "childrenIds": ["m2"]},
                "m2": {"id": "m2", "parentId": "m1", "role": "assistant", "content": reply},
            },
        },
    }


async def test_search_finds_chats_by_message_text_and_title_only_the_users(nc: Client) -> None:
    store = await open_store(nc)
    heron = await store.create("alice", turn("Where do herons nest?", "In tall reeds, mostly."))
    titled = await store.create("alice", {"title": "Notes on Reeds"})
    await store.create("alice", turn("Something else", "entirely"))
    await store.create("bob", turn("tall reeds", "bob's own"))

    hits = await store.search("alice", "TALL REEDS")
    assert [h.id for h in hits] == [heron.id]  # the phrase is in a message, not a title
    assert hits[0].snippet == "In tall reeds, mostly."
    assert {h.id for h in await store.search("alice", "reeds")} == {heron.id, titled.id}
    # every word somewhere in the chat, though not as one phrase
    assert [h.id for h in await store.search("alice", "herons mostly")] == [heron.id]
    assert await store.search("alice", "absent words") == []
    assert await store.search("carol", "reeds") == []


async def test_search_sees_updates_and_deletions_and_ranks_whole_phrases_first(
    nc: Client,
) -> None:
    store = await open_store(nc)
    first = await store.create("alice", turn("red kite", "a bird"))
    words = await store.create("alice", turn("kite flying", "red sky"))
    hits = await store.search("alice", "red kite")
    assert [h.id for h in hits] == [first.id, words.id]  # the phrase, then the words

    await store.merge("alice", words.id, turn("nothing here", "at all"))
    assert [h.id for h in await store.search("alice", "kite")] == [first.id]
    await store.delete("alice", first.id)
    assert await store.search("alice", "kite") == []


async def test_search_pages_hold_sixty_newest_first(nc: Client) -> None:
    store = await open_store(nc)
    made = [await store.create("alice", turn(f"otters {n}?", "ok")) for n in range(65)]
    first = await store.search("alice", "otters", page=1)
    second = await store.search("alice", "otters", page=2)
    assert len(first) == 60 and len(second) == 5
    ids = [h.id for h in first + second]
    assert set(ids) == {c.id for c in made} and len(set(ids)) == 65
    stamps = [h.updated_at for h in first + second]
    assert stamps == sorted(stamps, reverse=True)


async def test_chats_stored_before_message_search_are_found_once_reopened(nc: Client) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    store = await ChatStore.open(nc.jetstream(), prefix=prefix)
    old = await store.create("alice", turn("an old question about lighthouses", "yes"))
    # as a store written before search entries existed: no entry, no marker
    await store._bucket.purge(f"find.alice.{old.id}")
    await store._bucket.purge("backfilled.find")
    assert await store.search("alice", "lighthouses") == []

    reopened = await ChatStore.open(nc.jetstream(), prefix=prefix)
    assert [h.id for h in await reopened.search("alice", "lighthouses")] == [old.id]
