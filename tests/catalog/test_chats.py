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
