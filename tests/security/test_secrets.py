"""Secrets stay secret: no password, API key, JWT, JWT secret or backend key in any
service's log (every service a real process, logging at debug; nor any NATS password),
and no password or raw API key stored in the KV buckets.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from nats.js.errors import BucketNotFoundError, NoKeysError

from common.nats_conn import connect_nats
from stack.launcher import Stack as ProcessStack
from stack.nats_permissions import JETSTREAM_USE
from tests.fakes.openai_fake import OpenAIFake
from tests.stack.support import clean_environ, free_stack_settings

pytestmark = [pytest.mark.security, pytest.mark.slow]

PASSWORD = "Tr0ub4dor&3-" + uuid.uuid4().hex[:8]
WRONG_PASSWORD = "wrong-" + uuid.uuid4().hex[:12]
JWT_SECRET = "secrets-test-" + uuid.uuid4().hex + uuid.uuid4().hex
BACKEND_KEY = "sk-backend-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[OpenAIFake]:
    backend = OpenAIFake(api_key=BACKEND_KEY)
    await backend.start()
    yield backend
    await backend.stop()


@pytest.fixture(scope="module")
async def processes(
    fake: OpenAIFake, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ProcessStack]:
    settings = free_stack_settings(tmp_path_factory.mktemp("secrets"))
    settings.log_level = "debug"
    environ = clean_environ(
        RAGWAY_OPENAI_API_BASE_URLS=fake.base_url,
        RAGWAY_OPENAI_API_KEYS=BACKEND_KEY,
        RAGWAY_JWT_SECRET=JWT_SECRET,
        RAGWAY_PASSWORD_TIME_COST="1",
        RAGWAY_PASSWORD_MEMORY_KIB="8",
        RAGWAY_PASSWORD_PARALLELISM="1",
        RAGWAY_SANDBOX_SPARES="0",
    )
    stack = ProcessStack(settings, environ)
    await stack.astart()
    try:
        yield stack
    finally:
        await stack.astop()


async def full_flow(url: str) -> dict[str, str]:
    """Sign up, sign in (wrong, then right), make and use keys and JWTs: the secrets seen."""
    email = f"secret-{uuid.uuid4().hex[:8]}@example.test"
    seen = {"password": PASSWORD, "wrong password": WRONG_PASSWORD}
    async with aiohttp.ClientSession() as http:

        async def call(method: str, path: str, token: str | None = None, **kw: Any) -> Any:
            headers = {"Authorization": f"Bearer {token}"} if token else None
            async with http.request(method, url + path, headers=headers, **kw) as reply:
                body = await reply.json()
                assert reply.status < 500, body
                return reply.status, body

        status, session = await call(
            "POST",
            "/api/v1/auths/signup",
            json={"name": "Secret Keeper", "email": email, "password": PASSWORD},
        )
        assert status == 200, session
        seen["signup jwt"] = session["token"]
        status, _ = await call(
            "POST", "/api/v1/auths/signin", json={"email": email, "password": WRONG_PASSWORD}
        )
        assert status == 401
        status, session = await call(
            "POST", "/api/v1/auths/signin", json={"email": email, "password": PASSWORD}
        )
        assert status == 200
        token = seen["signin jwt"] = session["token"]
        status, reply = await call("POST", "/api/v1/auths/api_key", token)
        key = seen["api key"] = reply["api_key"]
        assert (await call("GET", "/api/v1/auths/", token))[0] == 200
        assert (await call("GET", "/api/v1/auths/", key))[0] == 200
        status, reply = await call("GET", "/api/v1/auths/api_key", token)
        assert status == 200
        ask = {"model": "gpt-fake", "messages": [{"role": "user", "content": "hello"}]}
        status, reply = await call("POST", "/api/chat/completions", key, json=ask)
        assert status == 200, reply
        status, _ = await call("POST", "/api/v1/chat/completions", token, json=ask)
        assert status == 200
        status, reply = await call("POST", "/api/v1/auths/api_key", token)  # replaces the key
        seen["second api key"] = reply["api_key"]
        assert (await call("GET", "/api/v1/auths/", key))[0] == 401
        assert (await call("DELETE", "/api/v1/auths/api_key", token))[0] == 200
        assert (await call("GET", "/api/v1/auths/", seen["second api key"]))[0] == 401
        assert (await call("GET", "/api/v1/auths/", "sk-" + "0" * 32))[0] == 401
        assert (await call("GET", "/api/v1/auths/", token + "x"))[0] == 401
    return seen


async def test_no_secret_reaches_any_log(processes: ProcessStack) -> None:
    seen = await full_flow(processes.url)
    nats = {f"NATS password of {n}": auth.password for n, auth in processes.nats_users.items()}
    assert nats, "the stack runs with NATS users"
    secrets = {**seen, **nats, "jwt secret": JWT_SECRET, "backend key": BACKEND_KEY}
    logs_dir = processes.data_dir / "logs"
    logs = {path.name: path.read_text(errors="replace") for path in logs_dir.glob("*.log")}
    assert {"auth.log", "gateway.log", "inference_proxy.log"} <= set(logs), sorted(logs)
    # the logs are there and at debug level: they name the flow's events
    everything = "\n".join(logs.values())
    for event in ("user_signed_in", "signin_failed", "api_key_created", "http_request"):
        assert event in everything, event
    for name, text in logs.items():
        for what, secret in secrets.items():
            assert secret not in text, f"{what} found in {name}"
            # nor its signature half, for the JWTs (a header.payload prefix is no secret)
            if what.endswith("jwt"):
                assert secret.rsplit(".", 1)[1] not in text, f"{what} signature in {name}"


async def _kv_contents(stack: ProcessStack) -> dict[str, bytes]:
    """Every value of every KV bucket on the server, as `bucket/key`: each service's
    buckets read with its own NATS user (no user may read them all)."""
    values: dict[str, bytes] = {}
    for service, use in JETSTREAM_USE.items():
        async with connect_nats(
            [stack.nats.url], name="secrets-test", auth=stack.nats_users[service]
        ) as client:
            js = client.jetstream()
            for bucket in use.buckets:
                name = f"ragway_{bucket}"
                try:
                    kv = await js.key_value(name)
                except BucketNotFoundError:
                    continue
                try:
                    keys = await kv.keys()
                except NoKeysError:
                    continue
                for key in keys:
                    entry = await kv.get(key)
                    values[f"KV_{name}/{key}"] = entry.value or b""
    return values


async def test_neither_passwords_nor_raw_keys_are_stored(processes: ProcessStack) -> None:
    seen = await full_flow(processes.url)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            processes.url + "/api/v1/auths/api_key",
            headers={"Authorization": f"Bearer {seen['signin jwt']}"},
        ) as reply,
    ):
        live_key = (await reply.json())["api_key"]  # one key that is stored right now
    stored = await _kv_contents(processes)
    assert stored, "no KV values read"
    blob = b"\n".join(stored.values())
    for what in ("password", "wrong password", "api key", "second api key"):
        assert seen[what].encode() not in blob, what
    assert live_key.encode() not in blob
    assert hashlib.sha256(live_key.encode()).hexdigest().encode() in blob  # kept as a hash
    assert b"$argon2id$" in blob  # passwords as argon2id hashes
    # JWTs are not stored either: they are verified, never looked up
    assert seen["signin jwt"].encode() not in blob
