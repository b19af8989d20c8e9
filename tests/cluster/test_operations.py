"""Operating the scaled-out deployment: one request id in every service's JSON log lines,
and nats.micro `$SRV` stats from every instance of every backend service."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import pytest

from contracts import subjects
from tests.cluster.deployment import (
    GATEWAYS,
    INGESTION_WORKERS,
    Client,
    Deployment,
    await_connection,
    document,
    micro_replies,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def services_logging(deployment: Deployment, request_id: str) -> set[str]:
    """The services (gateway-0 -> gateway) with a JSON log line bound to `request_id`."""
    found = set()
    for name in deployment.services:
        if any(line.get("request_id") == request_id for line in deployment.log_lines(name)):
            found.add(name.split("-")[0])
    return found


async def wait_completed(client: Client, file_id: str, within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    while True:
        status, body = await client.file_status(file_id)
        assert status == 200, body
        if body["status"] == "completed":
            return
        assert body["status"] != "failed" and time.monotonic() < deadline, body
        await asyncio.sleep(0.1)


async def test_one_request_id_follows_an_upload_and_a_rag_chat_through_every_service(
    deployment: Deployment, http: aiohttp.ClientSession
) -> None:
    first, second = deployment.gateway_urls
    uploader = Client(http, first)
    await uploader.signup()
    upload_id = f"abc-upload-{uuid.uuid4().hex[:8]}"
    status, record = await uploader.upload(
        document(1, 3), "ops.md", headers={"X-Request-Id": upload_id}
    )
    assert status == 200, record
    await wait_completed(uploader, record["id"])

    # The other gateway has never seen this token: it asks auth, under the chat's id.
    chatter = Client(http, second, uploader.token)
    chat_id = f"abc-chat-{uuid.uuid4().hex[:8]}"
    status, reply = await chatter.chat(
        "Which replica keeps record 1001?", (record["id"],), headers={"X-Request-Id": chat_id}
    )
    assert status == 200, reply
    assert reply["sources"], reply

    await asyncio.sleep(0.3)  # the last lines reach the log files
    assert services_logging(deployment, upload_id) >= {"gateway", "ingestion", "retrieval"}
    assert services_logging(deployment, chat_id) >= {
        "gateway",
        "auth",
        "retrieval",
        "inference_proxy",
    }


async def test_every_service_instance_answers_srv_stats(deployment: Deployment) -> None:
    names = (
        subjects.GATEWAY_SERVICE,
        subjects.AUTH_SERVICE,
        subjects.INFERENCE_SERVICE,
        subjects.RETRIEVAL_SERVICE,
        subjects.INGESTION_SERVICE,
    )
    async with await_connection(deployment.cluster.urls) as nc:
        stats = {name: await micro_replies(nc, f"$SRV.STATS.{name}") for name in names}
    for name, replies in stats.items():
        assert replies, f"no $SRV.STATS reply from {name}"
        for reply in replies:
            assert reply["type"] == "io.nats.micro.v1.stats_response"
            assert reply["name"] == name
            assert "started" in reply
            # ingestion workers consume a JetStream queue and the gateway serves HTTP:
            # micro services with no NATS endpoints
            if name not in (subjects.INGESTION_SERVICE, subjects.GATEWAY_SERVICE):
                assert reply["endpoints"], reply
    assert len({reply["id"] for reply in stats[subjects.INGESTION_SERVICE]}) == INGESTION_WORKERS
    assert len({reply["id"] for reply in stats[subjects.GATEWAY_SERVICE]}) == GATEWAYS
    handled = sum(e["num_requests"] for r in stats[subjects.AUTH_SERVICE] for e in r["endpoints"])
    assert handled > 0  # the sign-up of the test before went through auth
