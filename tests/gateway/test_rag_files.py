"""File routes of the gateway with the real auth service and JetStream, no ingestion workers:
uploads stream into the object store, jobs wait on the queue, records stay pending unless
a test moves them along itself (as a worker would, through the catalog)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
import pytest
from nats.js import JetStreamContext

from auth.app import serve as serve_auth
from auth.settings import Settings as AuthSettings
from catalog.files import FileCatalog, text_name
from common.nats_conn import connect_nats
from contracts.files import FileData, FileRecord
from gateway.app import GatewayHandle, Settings, serve
from gateway.uploads import safe_filename
from tests.gateway.rag_helpers import RssPeak, form, sse_events, streamed_form

MIB = 1024 * 1024
PASSWORD = "correct horse battery"


@dataclass
class Env:
    gateway: GatewayHandle
    settings: Settings
    http: aiohttp.ClientSession
    js: JetStreamContext
    catalog: FileCatalog
    alice: dict[str, str]
    bob: dict[str, str]

    async def call(
        self, method: str, path: str, auth: dict[str, str], **kw: Any
    ) -> tuple[int, Any]:
        async with self.http.request(method, self.gateway.url + path, headers=auth, **kw) as reply:
            body = await reply.json() if reply.content_type == "application/json" else None
            return reply.status, body

    async def upload(self, content: bytes, name: str, auth: dict[str, str] | None = None) -> Any:
        status, record = await self.call(
            "POST", "/api/v1/files/", auth or self.alice, data=form(content, name)
        )
        assert status == 200, record
        return record

    async def jobs_queued(self) -> int:
        info = await self.js.stream_info(self.settings.ingest_stream)
        return int(info.state.messages)

    async def blob_messages(self) -> int:
        info = await self.js.stream_info(f"OBJ_{self.settings.bucket_prefix}_blobs")
        return int(info.state.messages)


async def _signup(http: aiohttp.ClientSession, url: str) -> dict[str, str]:
    email = f"u-{uuid.uuid4().hex[:10]}@example.test"
    async with http.post(
        f"{url}/api/v1/auths/signup", json={"name": "U", "email": email, "password": PASSWORD}
    ) as reply:
        assert reply.status == 200
        return {"Authorization": f"Bearer {(await reply.json())['token']}"}


@pytest.fixture(scope="module")
async def env(nats_url: str) -> AsyncIterator[Env]:
    prefix = f"g{uuid.uuid4().hex[:10]}"
    queue = uuid.uuid4().hex[:10]
    settings = Settings(
        nats_url=nats_url,
        port=0,
        request_timeout_seconds=2,
        bucket_prefix=prefix,
        ingest_stream=f"INGEST_{queue}",
        ingest_subject=f"test.ingest.{queue}",
        file_max_size_mb=25,
        file_status_stream_max_seconds=5,
    )
    auth_settings = AuthSettings(
        nats_url=nats_url,
        bucket_prefix=prefix,
        jwt_secret="gateway-files-" + "x" * 32,
        password_time_cost=1,
        password_memory_kib=8,
        default_user_role="user",  # this stack's users act at once
        signup_max_per_address=100_000,
    )
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(serve_auth(auth_settings))
        gateway = await stack.enter_async_context(serve(settings))
        nc = await stack.enter_async_context(connect_nats([nats_url], name="files-test"))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        js = nc.jetstream()
        catalog = await FileCatalog.open(js, prefix)
        alice = await _signup(http, gateway.url)
        bob = await _signup(http, gateway.url)
        yield Env(gateway, settings, http, js, catalog, alice, bob)


async def test_an_upload_returns_a_pending_file_object_and_queues_one_job(env: Env) -> None:
    content = b"# Notes\n\nragway keeps uploads in JetStream.\n"
    before = await env.jobs_queued()
    record = await env.upload(content, "notes.md")
    assert record["data"] == {"status": "pending"}
    assert record["filename"] == "notes.md"
    assert record["hash"] == hashlib.sha256(content).hexdigest()
    assert record["meta"]["name"] == "notes.md"
    assert record["meta"]["size"] == len(content)
    assert record["meta"]["content_type"] == "text/markdown"
    assert record["created_at"] > 0 and record["user_id"]
    assert await env.jobs_queued() == before + 1
    status, again = await env.call("GET", f"/api/v1/files/{record['id']}", env.alice)
    assert status == 200 and again["id"] == record["id"]


async def test_upload_metadata_is_kept_in_the_file_meta(env: Env) -> None:
    data = form(b"hello", "hello.txt", "text/plain")
    data.add_field("metadata", '{"collection": "docs"}', content_type="application/json")
    status, record = await env.call("POST", "/api/v1/files/", env.alice, data=data)
    assert status == 200, record
    assert record["meta"]["data"] == {"collection": "docs"}


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\evil.txt", "evil.txt"),
        ("..", "file"),
        ("x" * 300 + ".md", "x" * 252 + ".md"),
    ],
)
async def test_file_names_lose_directories_and_control_characters(
    env: Env, given: str, kept: str
) -> None:
    record = await env.upload(b"text", given)
    assert record["filename"] == kept
    assert record["meta"]["name"] == kept


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("bad\x00na\x1bme\n.txt", "badname.txt"),
        ("a\u202egnp.txt", "agnp.txt"),  # right-to-left override
        ("..%2F..%2Fsecret.md", "secret.md"),
        ("", "file"),
        (None, "file"),
    ],
)
def test_safe_filename_drops_control_characters_and_escaped_paths(
    given: str | None, kept: str
) -> None:
    assert safe_filename(given) == kept


async def test_an_upload_over_the_limit_is_413_and_leaves_nothing_behind(env: Env) -> None:
    small = Settings(**{**msgspec.structs.asdict(env.settings), "file_max_size_mb": 1})
    async with serve(small) as gateway:
        blobs, jobs = await env.blob_messages(), await env.jobs_queued()
        _, listed_before = await env.call("GET", "/api/v1/files/", env.alice)
        # streamed (no Content-Length): the limit is enforced while reading
        async with env.http.post(
            f"{gateway.url}/api/v1/files/", data=streamed_form(3 * MIB), headers=env.alice
        ) as reply:
            assert reply.status == 413
            assert "1 MB" in (await reply.json())["detail"]
        # declared too large up front: refused before reading
        big = form(io.BytesIO(b"a" * (3 * MIB)), "a.txt")  # bytes this large: a warning
        async with env.http.post(
            f"{gateway.url}/api/v1/files/", data=big, headers=env.alice
        ) as reply:
            assert reply.status == 413
    assert await env.blob_messages() == blobs
    assert await env.jobs_queued() == jobs
    _, listed_after = await env.call("GET", "/api/v1/files/", env.alice)
    assert len(listed_after) == len(listed_before)


@pytest.mark.parametrize(
    ("content", "name"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "picture.png"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "innocent.txt"),  # the bytes tell
        (b"PK\x03\x04" + b"\x00" * 64, "bundle.zip"),
        (b"\x7fELF\x02\x01" + b"\x00" * 64, "tool"),
    ],
)
async def test_clearly_unsupported_binaries_are_415(env: Env, content: bytes, name: str) -> None:
    blobs = await env.blob_messages()
    status, body = await env.call("POST", "/api/v1/files/", env.alice, data=form(content, name))
    assert status == 415
    assert name in body["detail"]
    assert await env.blob_messages() == blobs


async def test_an_upload_without_a_file_field_is_400(env: Env) -> None:
    data = aiohttp.FormData()
    data.add_field("other", "value")
    status, body = await env.call("POST", "/api/v1/files/", env.alice, data=data)
    assert status == 400
    assert "'file'" in body["detail"]


async def test_content_comes_back_byte_for_byte_as_a_safe_download(env: Env) -> None:
    content = bytes(range(256)) * 2000  # over one object-store chunk
    record = await env.upload(content, 'résumé "final".json')
    url = f"{env.gateway.url}/api/v1/files/{record['id']}/content"
    async with env.http.get(url, headers=env.alice) as reply:
        assert reply.status == 200
        assert await reply.read() == content
        assert reply.content_type == "application/json"
        disposition = reply.headers["Content-Disposition"]
        assert disposition.startswith('attachment; filename="r_sum_ _final_.json"')
        assert "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.json" in disposition
        assert reply.headers["X-Content-Type-Options"] == "nosniff"


async def test_extracted_text_is_404_until_written_then_served(env: Env) -> None:
    record = await env.upload(b"plain words", "words.txt")
    status, body = await env.call("GET", f"/api/v1/files/{record['id']}/data/content", env.alice)
    assert status == 404
    assert "pending" in body["detail"] and "words.txt" in body["detail"]
    await env.catalog.blobs.put_bytes(text_name(record["id"]), "plain words — ünïcode".encode())
    await env.catalog.update(record["id"], _with_status("completed"))
    status, body = await env.call("GET", f"/api/v1/files/{record['id']}/data/content", env.alice)
    assert status == 200
    assert body == {"content": "plain words — ünïcode"}


def _with_status(status: str, **data: Any) -> Any:
    def change(record: FileRecord) -> FileRecord:
        record.data = FileData(status=status, **data)  # type: ignore[arg-type]
        return record

    return change


async def test_status_is_json_and_its_stream_follows_changes_until_completed(env: Env) -> None:
    record = await env.upload(b"some text", "status.txt")
    file_id = record["id"]
    status, body = await env.call("GET", f"/api/v1/files/{file_id}/process/status", env.alice)
    assert (status, body) == (200, {"status": "pending", "stage": "queued"})

    async def worker() -> None:
        await asyncio.sleep(0.1)
        await env.catalog.update(file_id, _with_status("processing", chunks_total=2))
        await env.catalog.update(file_id, _with_status("processing", chunks_done=1, chunks_total=2))
        await env.catalog.update(file_id, _with_status("completed", chunks_done=2, chunks_total=2))

    moving = asyncio.create_task(worker())
    url = f"{env.gateway.url}/api/v1/files/{file_id}/process/status?stream=true"
    async with asyncio.timeout(5), env.http.get(url, headers=env.alice) as reply:
        assert reply.content_type == "text/event-stream"
        events = await sse_events(reply)
    await moving
    assert events[0] == {"status": "pending", "stage": "queued"}
    assert events[-1] == {
        "status": "completed",
        "stage": "done",
        "chunks_done": 2,
        "chunks_total": 2,
    }
    # a record without a stage (an older worker's): derived from what it says
    assert {
        "status": "processing",
        "stage": "extracting",
        "chunks_done": 1,
        "chunks_total": 2,
    } in events


async def test_a_failed_file_ends_its_status_stream_with_the_reason(env: Env) -> None:
    record = await env.upload(b"x", "broken.txt")
    await env.catalog.update(record["id"], _with_status("failed", error="No text"))
    url = f"{env.gateway.url}/api/v1/files/{record['id']}/process/status?stream=true"
    async with asyncio.timeout(5), env.http.get(url, headers=env.alice) as reply:
        events = await sse_events(reply)
    assert events == [{"status": "failed", "stage": "failed", "error": "No text"}]


async def test_the_list_holds_only_the_callers_files(env: Env) -> None:
    mine = await env.upload(b"alice's", "alice.txt")
    theirs = await env.upload(b"bob's", "bob.txt", env.bob)
    _, alice_files = await env.call("GET", "/api/v1/files/", env.alice)
    _, bob_files = await env.call("GET", "/api/v1/files/", env.bob)
    assert mine["id"] in {f["id"] for f in alice_files}
    assert theirs["id"] not in {f["id"] for f in alice_files}
    assert [f["id"] for f in bob_files] == [theirs["id"]]


@pytest.mark.parametrize("route", ["", "/process/status", "/content", "/data/content"])
async def test_another_user_gets_404_for_a_file_on_every_read_route(env: Env, route: str) -> None:
    record = await env.upload(b"private", "private.txt")
    status, body = await env.call("GET", f"/api/v1/files/{record['id']}{route}", env.bob)
    assert status == 404
    assert body == {"detail": "File not found"}
    status, _ = await env.call("GET", f"/api/v1/files/{record['id']}{route}", env.alice)
    assert status in (200, 404)  # data/content: not extracted yet, but not "not found"


async def test_a_20_mb_upload_does_not_grow_the_gateway_by_20_mb(env: Env) -> None:
    await env.upload(b"warm up " * 1000, "warm.txt")
    async with (
        RssPeak() as rss,
        env.http.post(
            f"{env.gateway.url}/api/v1/files/", data=streamed_form(20 * MIB), headers=env.alice
        ) as reply,
    ):
        assert reply.status == 200
        record = await reply.json()
    assert record["meta"]["size"] == 20 * MIB
    # gateway, client and NATS client share this process; all of them stay far below 20 MB
    assert rss.growth < 8 * MIB, f"RSS grew by {rss.growth / MIB:.1f} MiB"


async def test_a_status_stream_ends_at_its_time_bound_while_still_pending(env: Env) -> None:
    record = await env.upload(b"never processed", "waiting.txt")
    bounded = Settings(
        **{**msgspec.structs.asdict(env.settings), "file_status_stream_max_seconds": 0.3}
    )
    async with serve(bounded) as gateway:
        url = f"{gateway.url}/api/v1/files/{record['id']}/process/status?stream=true"
        async with asyncio.timeout(3), env.http.get(url, headers=env.alice) as reply:
            events = await sse_events(reply)
    assert events == [{"status": "pending", "stage": "queued"}]
