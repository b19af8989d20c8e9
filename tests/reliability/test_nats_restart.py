"""nats-server killed and started again (same port, same JetStream store) under traffic:
nothing stored is lost, every service reconnects by itself, the outage is a quick 503."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from tests.reliability.conftest import StackFactory
from tests.reliability.support import (
    MODEL,
    PASSWORD,
    Account,
    ProcessStack,
    eventually,
    markdown_file,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

# Requests sent during the outage are answered at once (503). One already on the wire when
# the server died waits for its reply until a timeout: the gateway's request timeout (3 s
# here) or, for JetStream calls (KV, object store), nats-py's 5 s API timeout.
OUTAGE_ANSWER_BOUND_S = 5.5


@dataclass
class Sample:
    path: str
    status: int | str
    started: float
    ended: float

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class Traffic:
    """Requests in a loop (a JWT and an API key, reads that need each service) until stopped."""

    stack: ProcessStack
    user: Account
    key_user: Account
    samples: list[Sample] = field(default_factory=list)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    PATHS = ("/api/v1/auths/", "/api/v1/files/", "/api/v1/knowledge/", "/api/models", "/health")

    async def run(self) -> None:
        """One loop per path, so a request caught on the wire by the crash delays no other."""
        await asyncio.gather(*(self._loop(path) for path in self.PATHS))

    async def _loop(self, path: str) -> None:
        who = self.key_user if path == "/api/v1/files/" else self.user
        while not self.stopped.is_set():
            started = time.monotonic()
            try:
                status: int | str
                status, _ = await self.stack.call("GET", path, who, timeout=10)
            except (TimeoutError, OSError) as exc:
                status = type(exc).__name__
            self.samples.append(Sample(path, status, started, time.monotonic()))
            await asyncio.sleep(0.05)

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.started and s.ended <= end]


@pytest.fixture(scope="module")
async def stack(launch: StackFactory) -> ProcessStack:
    launched: ProcessStack = await launch()
    return launched


async def test_a_nats_restart_under_traffic_loses_nothing_and_needs_no_service_restart(
    stack: ProcessStack,
) -> None:
    # State in every store: users and keys (auth), files and blobs, knowledge, chats.
    user = await stack.signup()
    status, key = await stack.call("POST", "/api/v1/auths/api_key", user)
    assert status == 200, key
    key_user = Account(user.id, user.email, key["api_key"])
    record = await stack.upload(key_user, markdown_file(1), "before.md")
    await eventually(lambda: stack.file_status(user, record["id"]), lambda s: s == "completed", 60)
    status, knowledge = await stack.call(
        "POST", "/api/v1/knowledge/create", user, json={"name": "Kept", "description": "d"}
    )
    assert status == 200, knowledge
    status, _ = await stack.call(
        "POST",
        f"/api/v1/knowledge/{knowledge['id']}/file/add",
        user,
        json={"file_id": record["id"]},
    )
    assert status == 200
    status, chat = await stack.call(
        "POST", "/api/v1/chats/new", user, json={"chat": {"title": "Kept chat"}}
    )
    assert status == 200, chat
    pids_before = {c.name: c.pid for c in stack.stack.services}

    traffic = Traffic(stack, user, key_user)
    runner = asyncio.create_task(traffic.run())
    try:
        await asyncio.sleep(0.5)
        killed_at = time.monotonic()
        await stack.stack.nats.astop(kill=True)
        await asyncio.sleep(0.2)
        status, body, took = await stack.timed_call("GET", "/health")
        assert (status, body) == (503, {"detail": "The message bus is unavailable"})
        assert took < 0.5  # not after the 0.5 s ping timeout, let alone a request timeout
        await asyncio.sleep(1.8)
        restarted_at = time.monotonic()
        await stack.stack.nats.astart()
        await eventually(lambda: stack.call("GET", "/health"), lambda r: r[0] == 200, 20)
        healthy_at = time.monotonic()
        await asyncio.sleep(1.0)
    finally:
        traffic.stopped.set()
        await runner

    before = traffic.between(0, killed_at)
    # the client notices the closed socket at once; a request already on the wire
    # at that instant may wait out the gateway's request timeout (504)
    outage = traffic.between(killed_at + 0.05, restarted_at)
    after = traffic.between(healthy_at, time.monotonic())
    assert before and all(s.status == 200 for s in before), before
    assert len(outage) >= 20, outage  # traffic kept flowing: nothing hung on the dead bus
    assert all(s.status == 503 for s in outage), outage
    assert after and all(s.status == 200 for s in after), after
    assert {s.status for s in traffic.samples} <= {200, 503, 504}, traffic.samples
    slow = [s for s in traffic.samples if s.seconds >= OUTAGE_ANSWER_BOUND_S]
    marks = {"killed": killed_at, "restarted": restarted_at, "healthy": healthy_at}
    assert not slow, (slow, marks)
    assert healthy_at - restarted_at < 5.0  # reconnected within a few reconnect waits

    # Same processes, reconnected on their own.
    assert {c.name: c.pid for c in stack.stack.services} == pids_before
    assert all(c.running() for c in stack.stack.services)

    # Everything stored before is still there.
    status, session = await stack.call(
        "POST", "/api/v1/auths/signin", json={"email": user.email, "password": PASSWORD}
    )
    assert (status, session["id"]) == (200, user.id)
    status, files = await stack.call("GET", "/api/v1/files/", key_user)
    assert status == 200 and [f["id"] for f in files] == [record["id"]]
    async with stack.http.get(
        f"{stack.url}/api/v1/files/{record['id']}/content", headers=user.auth
    ) as reply:
        assert reply.status == 200 and await reply.read() == markdown_file(1)
    status, kept = await stack.call("GET", f"/api/v1/knowledge/{knowledge['id']}", user)
    assert status == 200 and [f["id"] for f in kept["files"]] == [record["id"]]
    status, chat_again = await stack.call("GET", f"/api/v1/chats/{chat['id']}", user)
    assert (status, chat_again["title"]) == (200, "Kept chat")

    # And everything works: search, a new upload through the job queue, a completion.
    status, found = await stack.call(
        "POST",
        "/api/v1/retrieval/query/collection",
        user,
        json={"collection_names": [knowledge["id"]], "query": "topic 3", "k": 2},
    )
    assert status == 200 and found["metadatas"][0][0]["file_id"] == record["id"]
    second = await stack.upload(key_user, markdown_file(2), "after.md")
    await eventually(lambda: stack.file_status(user, second["id"]), lambda s: s == "completed", 60)
    status, completion = await stack.call(
        "POST",
        "/api/chat/completions",
        key_user,
        json={"model": MODEL, "messages": [{"role": "user", "content": "still here"}]},
    )
    assert status == 200, completion
    assert completion["choices"][0]["message"]["content"].endswith("still here")
