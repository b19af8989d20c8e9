"""Mailboxes under one wildcard subscription, and requests answered into them."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import nats
import pytest
from nats.aio.client import Client

from common.bus import Bus
from common.errors import RagwayError
from common.inbox import Inboxes
from common.service import ServiceHost
from contracts.endpoint import Endpoint


class Echo(msgspec.Struct, frozen=True):
    text: str


async def test_each_mailbox_gets_its_own_messages_in_order_batched(nc: Client) -> None:
    inboxes = Inboxes(nc)
    async with inboxes.open() as first, inboxes.open() as second:
        for n in range(5):
            await nc.publish(first.subject, f"a{n}".encode())
        await nc.publish(second.subject, b"b0")
        await nc.flush()
        async with asyncio.timeout(2):
            seen = []
            while len(seen) < 5:
                seen += [m.data for m in await first.batch()]
            assert seen == [b"a0", b"a1", b"a2", b"a3", b"a4"]
            assert [m.data for m in await second.batch()] == [b"b0"]
    await inboxes.close()


async def test_mailboxes_share_one_subscription_and_a_closed_one_hears_nothing(
    nats_url: str,
) -> None:
    # a connection of its own, so its subscription count is only ours
    own = await nats.connect(nats_url)
    try:
        inboxes = Inboxes(own)
        await inboxes.start()
        subscriptions = len(own._subs)
        async with inboxes.open() as box:
            subject = box.subject
            async with inboxes.open(), inboxes.open():
                assert len(own._subs) == subscriptions
        # after the block: messages for it are dropped, nothing waits for them
        await own.publish(subject, b"late")
        await own.flush()
        async with inboxes.open() as other:
            await own.publish(other.subject, b"fresh")
            async with asyncio.timeout(2):
                assert [m.data for m in await other.batch()] == [b"fresh"]
        await inboxes.close()
    finally:
        await own.close()


async def test_a_request_into_a_mailbox_gets_its_reply_there_and_the_stream_after_it(
    nc: Client, bus: Bus
) -> None:
    stream = Endpoint(f"test.stream.{uuid.uuid4().hex}", Echo, Echo, "inbox-test", (), True)
    inboxes = Inboxes(nc)

    async def start_stream(request: Echo) -> Echo:
        # the stream goes to the subject named in the request, the reply to the reply subject
        await nc.publish(request.text, b"chunk")
        return Echo(text="accepted")

    async with ServiceHost(nc, "inbox-test") as host:
        await host.serve(stream, start_stream)
        async with inboxes.open() as box:
            reply = await bus.call_into(stream, Echo(text=box.subject), box, timeout=2)
            assert reply == Echo(text="accepted")
            async with asyncio.timeout(2):
                assert [m.data for m in await box.batch()] == [b"chunk"]
    await inboxes.close()


async def test_a_request_into_a_mailbox_maps_errors_like_any_request(nc: Client, bus: Bus) -> None:
    failing = Endpoint(f"test.fail.{uuid.uuid4().hex}", Echo, Echo, "inbox-fail-test", ())
    nobody = Endpoint(f"test.nobody.{uuid.uuid4().hex}", Echo, Echo, "test", ())
    inboxes = Inboxes(nc)

    async def refuse(request: Echo) -> Echo:
        if request.text == "slow":
            await asyncio.sleep(1)
        raise RagwayError("not_found", "No such model")

    async with inboxes.open() as box:
        with pytest.raises(RagwayError) as unanswered:
            await bus.call_into(nobody, Echo(text="x"), box, timeout=2)
        assert (unanswered.value.code, unanswered.value.detail) == (
            "unavailable",
            "The test service is unavailable",
        )
        async with ServiceHost(nc, "inbox-fail-test") as host:
            await host.serve(failing, refuse)
            with pytest.raises(RagwayError) as missing:
                await bus.call_into(failing, Echo(text="x"), box, timeout=2)
            assert (missing.value.code, missing.value.detail) == ("not_found", "No such model")
            with pytest.raises(RagwayError) as late:
                await bus.call_into(failing, Echo(text="slow"), box, timeout=0.2)
            assert late.value.code == "timeout"
    await inboxes.close()
