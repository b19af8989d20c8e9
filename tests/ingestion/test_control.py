"""Steering ingestion over HTTP, with real services: auth, the gateway, retrieval and the
ingestion workers on a real nats-server. Cancel a running file (its vectors go), cancel a
queued one, retry (once, however often asked), dead letters for jobs that failed for good
or ran out of deliveries, and per-stage progress a client can watch move."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
import pytest
from nats.aio.client import Client

from auth.app import serve as serve_auth
from auth.settings import Settings as AuthSettings
from catalog.files import FileCatalog, text_name
from common.errors import RagwayError
from gateway.app import GatewayHandle
from gateway.app import Settings as GatewaySettings
from gateway.app import serve as serve_gateway
from ingestion.app import Settings, serve
from ingestion.queue import ensure_advisories, ensure_queue
from retrieval.app import Retrieval
from tests.gateway.rag_helpers import form, sse_events
from tests.ingestion.test_worker import handbook

PASSWORD = "correct horse battery"
WAIT_SECONDS = 90.0


@dataclass
class Api:
    gateway: GatewayHandle
    http: aiohttp.ClientSession
    settings: Settings  # the ingestion workers' settings, on the gateway's queue
    admin: dict[str, str]
    alice: dict[str, str]
    bob: dict[str, str]

    async def call(
        self, method: str, path: str, auth: dict[str, str], **kw: Any
    ) -> tuple[int, Any]:
        async with self.http.request(method, self.gateway.url + path, headers=auth, **kw) as reply:
            body = await reply.json() if reply.content_type == "application/json" else None
            return reply.status, body

    async def upload(self, content: bytes, name: str = "handbook.md") -> str:
        status, record = await self.call(
            "POST", "/api/v1/files/", self.alice, data=form(content, name)
        )
        assert status == 200, record
        return str(record["id"])

    async def status(self, file_id: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/api/v1/files/{file_id}/process/status", self.alice)
        assert status == 200, body
        return dict(body)

    async def status_when(self, file_id: str, ready: Any) -> dict[str, Any]:
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                current = await self.status(file_id)
                if ready(current):
                    return current
                await asyncio.sleep(0.02)


async def _signup(http: aiohttp.ClientSession, url: str) -> dict[str, str]:
    email = f"u-{uuid.uuid4().hex[:10]}@example.test"
    body = {"name": "U", "email": email, "password": PASSWORD}
    async with http.post(f"{url}/api/v1/auths/signup", json=body) as reply:
        assert reply.status == 200
        return {"Authorization": f"Bearer {(await reply.json())['token']}"}


@pytest.fixture(scope="module")
async def api(nats_url: str, prefix: str, retrieval: Retrieval) -> AsyncIterator[Api]:
    queue = uuid.uuid4().hex[:10]
    workers = Settings(
        nats_url=nats_url,
        log_level="warning",
        bucket_prefix=prefix,
        ingest_stream=f"CTL_{queue}",
        ingest_subject=f"test.ctl.{queue}",
        ingest_consumer=f"workers_{queue}",
        dead_letter_stream=f"CTL_DEAD_{queue}",
        dead_letter_subjects=f"test.ctl_dead.{queue}.*",
        chunk_size=300,
        chunk_overlap=30,
        embedding=msgspec.structs.replace(Settings().embedding, batch_size=8),
        dense_range_chunks=48,  # a big file is embedded by several range jobs
        ack_wait_seconds=2.0,
        max_deliver=2,
        nak_delay_seconds=0.2,
    )
    gateway_settings = GatewaySettings(
        nats_url=nats_url,
        port=0,
        request_timeout_seconds=10,
        bucket_prefix=prefix,
        ingest_stream=workers.ingest_stream,
        ingest_subject=workers.ingest_subject,
        dead_letter_stream=workers.dead_letter_stream,
        dead_letter_subjects=workers.dead_letter_subjects,
    )
    auth_settings = AuthSettings(
        nats_url=nats_url,
        bucket_prefix=prefix,
        jwt_secret="ingest-control-" + "x" * 32,
        password_time_cost=1,
        password_memory_kib=8,
        default_user_role="user",
        signup_max_per_address=100_000,
    )
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(serve_auth(auth_settings))
        gateway = await stack.enter_async_context(serve_gateway(gateway_settings))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        admin = await _signup(http, gateway.url)  # the first user of this prefix
        alice = await _signup(http, gateway.url)
        bob = await _signup(http, gateway.url)
        yield Api(gateway, http, workers, admin, alice, bob)


async def drained(nc: Client, settings: Settings) -> None:
    """Wait until no job of the queue is waiting or in flight."""
    js = nc.jetstream()
    async with asyncio.timeout(WAIT_SECONDS):
        while True:
            info = await js.consumer_info(settings.ingest_stream, settings.ingest_consumer)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
            await asyncio.sleep(0.05)


async def test_a_client_sees_every_stage_and_the_chunks_move_until_done(
    api: Api, module_nc: Client
) -> None:
    await ensure_queue(module_nc.jetstream(), api.settings)
    file_id = await api.upload(handbook(3, parts=40))  # no worker yet: it waits queued
    url = f"{api.gateway.url}/api/v1/files/{file_id}/process/status?stream=true"
    # the events stream is open before the workers start
    async with (
        asyncio.timeout(WAIT_SECONDS),
        api.http.get(url, headers=api.alice) as reply,
        serve(api.settings),
    ):
        events = await sse_events(reply)

    stages = [event["stage"] for event in events]
    assert stages[0] == "queued" and stages[-1] == "done", stages
    firsts = list(dict.fromkeys(stages))
    assert firsts == ["queued", "extracting", "chunking", "indexing", "embedding", "done"]
    total = events[-1]["chunks_total"]
    moving = [e.get("chunks_done", 0) for e in events if e["stage"] == "embedding"]
    assert len({done for done in moving if 0 < done < total}) >= 3, moving
    assert moving == sorted(moving)
    assert events[-1] == {
        "status": "completed",
        "stage": "done",
        "chunks_done": total,
        "chunks_total": total,
        "keyword_searchable": True,
    }


async def test_cancel_while_running_stops_deletes_what_was_written_and_a_retry_completes(
    api: Api, module_nc: Client, retrieval: Retrieval, catalog: FileCatalog
) -> None:
    async with serve(api.settings) as ingestion:
        file_id = await api.upload(handbook(5, parts=400), "big.md")
        running = await api.status_when(
            file_id, lambda s: s["stage"] == "embedding" and s.get("chunks_done", 0) > 0
        )
        assert running["chunks_total"] > 4 * api.settings.dense_range_chunks  # range jobs
        status, body = await api.call(
            "POST",
            f"/api/v1/files/{file_id}/process/cancel",
            api.alice,
            json={"reason": "wrong document"},
        )
        assert status == 200, body
        assert body["status"] in ("processing", "failed")
        cancelled = await api.status_when(file_id, lambda s: s["status"] == "failed")
        await drained(module_nc, api.settings)
        assert cancelled["stage"] == "cancelled"
        assert cancelled["error"] == "Processing was cancelled by its owner: wrong document"
        assert ingestion.jobs.cancelled >= 1  # range jobs that were running
        assert ingestion.jobs.skipped >= 1  # range jobs still queued then
        # every range job stopped at a boundary and deleted what it had written
        assert await retrieval.store.count(file_id) == 0
        with pytest.raises(RagwayError):
            await catalog.blobs.get_bytes(text_name(file_id))
        status, body = await api.call("GET", f"/api/v1/files/{file_id}/data/content", api.alice)
        assert status == 404 and "cancelled" in body["detail"]

        status, body = await api.call("POST", f"/api/v1/files/{file_id}/process/retry", api.alice)
        assert status == 200, body
        assert (body["status"], body["stage"]) == ("pending", "queued")
        done = await api.status_when(file_id, lambda s: s["status"] in ("completed", "failed"))
    assert done["status"] == "completed", done
    assert await retrieval.store.count(file_id) == done["chunks_total"]


async def test_cancelling_a_queued_file_is_immediate_and_its_job_is_skipped(
    api: Api, module_nc: Client, retrieval: Retrieval
) -> None:
    await ensure_queue(module_nc.jetstream(), api.settings)
    file_id = await api.upload(b"# Notes\n\nA short note nobody needs.\n")
    path = f"/api/v1/files/{file_id}/process/cancel"
    status, body = await api.call("POST", path, api.bob)
    assert status == 404  # another user's file
    status, body = await api.call("POST", path, api.alice)
    assert status == 200, body
    assert body == {
        "status": "failed",
        "stage": "cancelled",
        "error": "Processing was cancelled by its owner",
    }
    again = await api.call("POST", path, api.alice, json={})
    assert again == (200, body)  # cancelling twice is the same answer
    async with serve(api.settings):
        await drained(module_nc, api.settings)
    assert await api.status(file_id) == body
    assert await retrieval.store.count(file_id) == 0

    done = await api.upload(b"# Done\n\nThis one is processed.\n")
    async with serve(api.settings):
        await api.status_when(done, lambda s: s["status"] == "completed")
    status, body = await api.call("POST", f"/api/v1/files/{done}/process/cancel", api.alice)
    assert status == 409 and "completed" in body["detail"]
    status, body = await api.call("POST", f"/api/v1/files/{done}/process/retry", api.alice)
    assert status == 409


async def test_retrying_twice_queues_one_job_and_the_earlier_run_is_left_alone(
    api: Api, module_nc: Client, retrieval: Retrieval
) -> None:
    js = module_nc.jetstream()
    await ensure_queue(js, api.settings)
    await drained(module_nc, api.settings)
    file_id = await api.upload(handbook(8, parts=4))
    status, _ = await api.call("POST", f"/api/v1/files/{file_id}/process/cancel", api.alice)
    assert status == 200
    retry = f"/api/v1/files/{file_id}/process/retry"
    first = await api.call("POST", retry, api.alice)
    second = await api.call("POST", retry, api.admin)  # an admin may too
    assert first[0] == second[0] == 200
    assert first[1]["status"] == second[1]["status"] == "pending"
    info = await js.consumer_info(api.settings.ingest_stream, api.settings.ingest_consumer)
    assert info.num_pending == 2  # the upload's job (run 0) and one retry (run 1)

    async with serve(api.settings) as ingestion:
        done = await api.status_when(file_id, lambda s: s["status"] == "completed")
        await drained(module_nc, api.settings)
    assert (ingestion.jobs.completed, ingestion.jobs.skipped) == (1, 1)
    assert ingestion.embedding.chunks_embedded == done["chunks_total"]  # indexed once
    assert await retrieval.store.count(file_id) == done["chunks_total"]


async def test_a_job_that_ran_out_of_deliveries_is_dead_lettered_listed_and_retried(
    api: Api, module_nc: Client, retrieval: Retrieval
) -> None:
    js = module_nc.jetstream()
    settings = api.settings
    await ensure_queue(js, settings)
    await ensure_advisories(js, settings)
    await drained(module_nc, settings)
    file_id = await api.upload(b"# Stuck\n\nA note whose workers keep dying.\n", "stuck.md")
    # A worker that takes the job and dies, as often as the consumer delivers it.
    dying = await js.pull_subscribe_bind(settings.ingest_consumer, stream=settings.ingest_stream)
    for delivery in range(1, settings.max_deliver + 1):
        [msg] = await dying.fetch(1, timeout=10)
        assert msg.metadata.num_delivered == delivery
    await dying.unsubscribe()
    # the advisory is kept in its stream until a worker runs: none is running yet
    await asyncio.sleep(settings.ack_wait_seconds + 1.0)
    assert (await api.status(file_id))["status"] == "pending"

    async with serve(settings):
        failed = await api.status_when(file_id, lambda s: s["status"] == "failed")
        assert failed["error"] == "The file could not be processed after 2 attempts"
        assert failed["stage"] == "failed"
        status, _ = await api.call("GET", "/api/v1/files/process/failed", api.alice)
        assert status == 403
        status, page = await api.call("GET", "/api/v1/files/process/failed?page=1", api.admin)
        assert status == 200, page
        [entry] = [item for item in page["items"] if item["file_id"] == file_id]
        assert entry["kind"] == "exhausted" and entry["deliveries"] == 2
        assert entry["reason"] == failed["error"] and entry["filename"] == "stuck.md"
        assert (entry["status"], entry["stage"]) == ("failed", "failed")
        assert page["total"] >= 1

        status, reply = await api.call(
            "POST", "/api/v1/files/process/retry", api.admin, json={"kind": "exhausted"}
        )
        assert status == 200, reply
        assert file_id in reply["file_ids"] and reply["retried"] == len(reply["file_ids"])
        done = await api.status_when(file_id, lambda s: s["status"] in ("completed", "failed"))
    assert done["status"] == "completed", done
    assert await retrieval.store.count(file_id) == done["chunks_total"]
    status, page = await api.call("GET", "/api/v1/files/process/failed", api.admin)
    assert file_id not in {item["file_id"] for item in page["items"]}


async def test_an_unreadable_file_is_dead_lettered_at_once_and_fails_again_on_retry(
    api: Api, module_nc: Client
) -> None:
    async with serve(api.settings):
        file_id = await api.upload(b"%PDF-1.4 not really", "broken.pdf")
        failed = await api.status_when(file_id, lambda s: s["status"] == "failed")
        status, page = await api.call("GET", "/api/v1/files/process/failed", api.admin)
        [entry] = [item for item in page["items"] if item["file_id"] == file_id]
        assert entry["kind"] == "failed" and entry["deliveries"] == 1
        assert entry["reason"] == failed["error"] and "PDF" in entry["reason"]

        status, body = await api.call("POST", f"/api/v1/files/{file_id}/process/retry", api.alice)
        assert status == 200 and body["status"] == "pending"
        again = await api.status_when(file_id, lambda s: s["status"] == "failed")
        await drained(module_nc, api.settings)
    assert again["error"] == failed["error"]
    status, page = await api.call("GET", "/api/v1/files/process/failed", api.admin)
    assert [item["file_id"] for item in page["items"]].count(file_id) == 1  # replaced


@pytest.mark.parametrize(
    ("path", "body", "detail"),
    [
        ("/api/v1/files/process/retry", {"limit": 0}, "limit"),
        ("/api/v1/files/process/retry", {"kind": "lost"}, "kind"),
        ("/api/v1/files/process/retry", {"surprise": 1}, "surprise"),
        ("/api/v1/files/process/failed?page=0", None, "page"),
    ],
)
async def test_bad_input_to_the_admin_routes_is_a_clear_400(
    api: Api, path: str, body: Any, detail: str
) -> None:
    method = "GET" if "failed" in path else "POST"
    status, reply = await api.call(method, path, api.admin, json=body)
    assert status == 400, reply
    assert detail in reply["detail"]


async def test_a_cancel_reason_that_is_not_text_is_a_clear_400(api: Api) -> None:
    file_id = await api.upload(b"# Short\n")
    status, reply = await api.call(
        "POST",
        f"/api/v1/files/{file_id}/process/cancel",
        api.alice,
        data=json.dumps({"reason": 7}),
    )
    assert status == 400 and "reason" in reply["detail"]
