"""Under uploads and chats through both gateways, SIGKILL a NATS node and an ingestion
worker: every upload completes, every chat is answered or gets a retryable 503/504, nothing
stored is lost, and the killed node rejoins the cluster."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest

from tests.cluster.deployment import PASSWORD, Client, Deployment, document

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

RETRYABLE = (502, 503, 504)
DOCUMENTS = 9
UPLOADS_DONE_WITHIN_S = 120.0


class Load:
    """Chats looping through both gateways, uploads spread over them; every outcome kept."""

    def __init__(self, clients: list[Client]) -> None:
        self.clients = clients
        self.chats: list[tuple[int, Any]] = []
        self.upload_retries = 0
        self.stopping = asyncio.Event()

    async def chat_loop(self, client: Client, turn: int) -> None:
        while not self.stopping.is_set():
            status, body = await client.chat(f"Loop {turn}: which rule keeps record 100?")
            self.chats.append((status, body))
            await asyncio.sleep(0.2)  # a steady load that leaves the 2 cores to ingestion

    async def upload(self, client: Client, name: str, content: bytes) -> str:
        """Upload as a well-behaved client does: again after a retryable error."""
        while True:
            status, body = await client.upload(content, name)
            if status == 200:
                return str(body["id"])
            assert status in RETRYABLE and body.get("detail"), (status, body)
            self.upload_retries += 1
            await asyncio.sleep(0.5)


async def status_of(client: Client, file_id: str) -> str:
    status, body = await client.file_status(file_id)
    if status in RETRYABLE:
        return "unknown"
    assert status == 200, body
    return str(body["status"])


async def all_completed(client: Client, file_ids: list[str]) -> dict[str, str]:
    deadline = time.monotonic() + UPLOADS_DONE_WITHIN_S
    while True:
        states = {file_id: await status_of(client, file_id) for file_id in file_ids}
        if all(state in ("completed", "failed") for state in states.values()):
            return states
        assert time.monotonic() < deadline, states
        await asyncio.sleep(0.25)


JobKey = tuple[str, str]  # (file id, chunk range or "" for a whole-file job)
JOB_ENDS = ("job_finished", "job_will_retry", "job_returned_to_queue")


def job_key(event: dict[str, Any]) -> JobKey:
    return str(event.get("file_id")), str(event.get("chunks", ""))


def jobs_in_flight(events: list[dict[str, Any]]) -> list[JobKey]:
    """Jobs a worker started and has not finished: none of them can have been acked,
    since a worker logs `job_finished` before it acks."""
    open_jobs: dict[JobKey, None] = {}
    for event in events:
        if event.get("event") == "job_started":
            open_jobs[job_key(event)] = None
        elif event.get("event") in JOB_ENDS and "file_id" in event:
            open_jobs.pop(job_key(event), None)
    return list(open_jobs)


async def freeze_a_worker_mid_job(deployment: Deployment, owner: Client) -> tuple[str, JobKey]:
    """SIGSTOP an ingestion worker that holds an unacked job; (worker, that job).

    Frozen first, then read: a worker that is still running could finish and ack the job
    between the look and the kill (a race that made this test fail under load)."""
    deadline = time.monotonic() + 60
    while True:
        for name, child in deployment.services.items():
            if not name.startswith("ingestion") or not child.running():
                continue
            if not any(e.get("event") == "job_started" for e in deployment.log_lines(name)):
                continue
            child.signal_group(signal.SIGSTOP)
            for key in reversed(jobs_in_flight(deployment.log_lines(name))):
                status, _ = await owner.file_status(key[0])
                if status == 200:  # not a file of another test's user
                    return name, key
            child.signal_group(signal.SIGCONT)
        assert time.monotonic() < deadline, "no worker was ever caught with a job in flight"
        await asyncio.sleep(0.05)


def leader_of(deployment: Deployment, stream: str) -> int:
    """The index of the node leading `stream` (its raft group), as node 0 reports it."""
    for node in range(len(deployment.cluster.nodes)):
        with contextlib.suppress(OSError):
            for account in deployment.cluster.jsz(node).get("account_details", []):
                for detail in account.get("stream_detail", []):
                    if detail["name"] == stream and detail.get("cluster", {}).get("leader"):
                        leader = detail["cluster"]["leader"]
                        return int(leader.rsplit("-", 1)[1])
    raise AssertionError(f"no leader found for {stream}")


async def test_killing_a_nats_node_and_a_worker_under_load_loses_no_upload_chat_or_data(
    deployment: Deployment, http: aiohttp.ClientSession
) -> None:
    first, second = deployment.gateway_urls
    owner = Client(http, first)
    session = await owner.signup()
    clients = [owner, Client(http, second, owner.token)]
    load = Load(clients)
    contents = {f"doc-{i}.md": document(100 + i, sections=10) for i in range(DOCUMENTS)}

    chatters = [
        asyncio.create_task(load.chat_loop(client, turn)) for turn, client in enumerate(clients * 2)
    ]
    uploads = {
        name: asyncio.create_task(load.upload(clients[i % 2], name, content))
        for i, (name, content) in enumerate(contents.items())
    }
    try:
        # 1. SIGKILL an ingestion worker in the middle of a job.
        victim, victim_job = await freeze_a_worker_mid_job(deployment, owner)
        deployment.services[victim].signal_group(signal.SIGKILL)

        # 2. SIGKILL the NATS node leading the file records (clients there must move over).
        node = leader_of(deployment, "KV_ragway_files")
        await asyncio.sleep(0.5)
        deployment.cluster.nodes[node].stop(kill=True)
        killed_at = time.monotonic()
        await asyncio.sleep(5)  # load goes on with two nodes of three

        # 3. The node comes back on its old store and catches up.
        await asyncio.to_thread(deployment.cluster.restart, node)
        file_ids = {name: await task for name, task in uploads.items()}
        accepted_s = time.monotonic() - killed_at
        states = await all_completed(owner, list(file_ids.values()))
        recovered_s = time.monotonic() - killed_at
    finally:
        load.stopping.set()
        for task in uploads.values():
            task.cancel()
        await asyncio.gather(*chatters, *uploads.values(), return_exceptions=True)
    for chatter in chatters:  # no chat loop ended on a connection error
        assert chatter.exception() is None, chatter.exception()

    # Every upload completed, the killed worker's file included: its unacked job went to
    # another worker.
    assert set(states.values()) == {"completed"}, states
    assert victim_job[0] in states
    others = [n for n in deployment.services if n.startswith("ingestion") and n != victim]
    redelivered = [
        e
        for n in others
        for e in deployment.log_lines(n)
        if e.get("event") == "job_started" and job_key(e) == victim_job
    ]
    assert redelivered and max(e["delivery"] for e in redelivered) >= 2, victim_job

    # Every chat was answered, or told clearly to retry.
    outcomes = Counter(status for status, _ in load.chats)
    assert set(outcomes) <= {200, *RETRYABLE}, outcomes
    assert outcomes[200] > 0
    for status, body in load.chats:
        if status == 200:
            assert body["choices"][0]["message"]["content"], body
        else:
            assert body.get("detail"), body
    for client in clients:  # and both gateways answer normally after the fault
        status, body = await client.chat("After the storm?")
        assert status == 200, body

    # Nothing stored was lost: the account, each file's bytes, its chunks.
    status, signed_in = await owner.call(
        "POST", "/api/v1/auths/signin", json={"email": session["email"], "password": PASSWORD}
    )
    assert status == 200, signed_in
    for name, file_id in file_ids.items():
        status, stored = await clients[1].call("GET", f"/api/v1/files/{file_id}/content")
        assert status == 200, (name, status, stored)
        assert stored == contents[name], name
        status, found = await clients[0].call(
            "POST",
            "/api/v1/retrieval/query/doc",
            json={"collection_name": file_id, "query": "record safe across failures", "k": 3},
        )
        assert status == 200 and found["documents"][0], (name, found)

    # The killed node rejoined: healthy, with every stream and message the others have.
    assert deployment.cluster.health(node)[0] == 200
    await converged(deployment, node)
    print(
        f"\nchats: {dict(outcomes)}; upload retries: {load.upload_retries}; "
        f"killed {victim} and nats node {node}; all uploads accepted {accepted_s:.1f} s and "
        f"completed {recovered_s:.1f} s after the node was killed"
    )


async def converged(deployment: Deployment, node: int, within_s: float = 60.0) -> None:
    """The rejoined node reports the same streams and messages as a node that stayed up."""
    other = (node + 1) % len(deployment.cluster.nodes)
    deadline = time.monotonic() + within_s
    while True:
        mine, theirs = deployment.cluster.jsz(node), deployment.cluster.jsz(other)
        if (mine["streams"], mine["messages"]) == (theirs["streams"], theirs["messages"]):
            assert mine["streams"] >= 8  # KV buckets, object store, the job queue: all R3
            return
        assert time.monotonic() < deadline, (mine, theirs)
        await asyncio.sleep(0.25)
