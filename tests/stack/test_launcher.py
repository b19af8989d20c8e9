"""The launcher runs the whole stack as real processes, stops all of it, and keeps data."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from common.parent_death import tied_to_parent
from stack.launcher import Stack
from stack.llm_setup import MODEL_ID
from stack.settings import StackSettings
from tests.stack.support import (
    alive,
    clean_environ,
    command_line,
    descendants,
    free_stack_settings,
    settings_environ,
    wait_until_gone,
)
from tests.support.nats import connect_refused

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"
SERVICE_MODULES = ("auth", "inference_proxy", "ingestion", "retrieval", "gateway")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, url: str, token: str = "", **kw: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, headers=headers, **kw) as reply:
        return reply.status, await reply.json()


class Launched:
    """`python -m stack run` as a child process, with the URL it printed when ready."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        settings = free_stack_settings(data_dir)
        with open(log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                # a killed pytest takes this launcher (and so its stack) with it
                tied_to_parent([sys.executable, "-m", "stack", "run"]),
                env=clean_environ(**settings_environ(settings)),
                stdout=subprocess.PIPE,
                stderr=log_file,
            )
        self.log_path = log_path
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # one line, printed once /health is 200
        assert b"ready at" in line, log_path.read_text()[-3000:]
        self.url = line.decode().split("ready at", 1)[1].strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[Launched]:
    launched = Launched(tmp_path / "data", tmp_path / "launcher.log")
    yield launched
    launched.stop()


def signup_while_supervising(stack: Stack, url: str, body: dict[str, str]) -> tuple[int, Any]:
    """Run the supervisor loop as `python -m stack run` does until the signup succeeds."""
    deadline = time.monotonic() + 30
    while True:
        stack.supervise_once()
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            if exc.code not in (503, 504) or time.monotonic() > deadline:
                return exc.code, json.loads(exc.read())
        except TimeoutError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


async def test_make_run_starts_every_process_serves_the_local_model_and_sigterm_stops_all(
    launched: Launched, http: aiohttp.ClientSession
) -> None:
    url = launched.url
    status, health = await call(http, "GET", f"{url}/health")
    assert status == 200 and health["status"] is True

    tree = descendants(launched.process.pid)
    commands = " ".join(command_line(pid) for pid in tree)
    for module in SERVICE_MODULES:
        assert f"-m {module}" in commands
    assert "nats-server" in commands
    assert "llama-server" in commands  # no backend configured: the local LLM runs

    status, session = await call(
        http,
        "POST",
        f"{url}/api/v1/auths/signup",
        json={"name": "Ada", "email": "ada@example.test", "password": PASSWORD},
    )
    assert status == 200, session
    status, models = await call(http, "GET", f"{url}/api/models", session["token"])
    assert MODEL_ID in [model["id"] for model in models["data"]]
    question = {"role": "user", "content": "Say hello."}
    status, completion = await call(
        http,
        "POST",
        f"{url}/api/chat/completions",
        session["token"],
        json={"model": MODEL_ID, "messages": [question], "max_tokens": 12},
    )
    assert status == 200, completion
    assert completion["choices"][0]["message"]["content"].strip()

    launched.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(launched.process.wait, 60) == 0
    assert await asyncio.to_thread(wait_until_gone, tree, 5) == []


def assert_own_credentials_only(stack: Stack, users_file: Path, made: dict[str, str]) -> None:
    """Each child got its own NATS user only, kept across restarts, in private files."""
    assert users_file.stat().st_mode & 0o777 == 0o600
    conf = stack.data_dir / "nats" / "nats-server.conf"
    assert conf.stat().st_mode & 0o777 == 0o600
    assert {name: auth.password for name, auth in stack.nats_users.items()} == made
    for child in stack.services:
        user = child.env["RAGWAY_NATS_USER"]
        assert child.env["RAGWAY_NATS_PASSWORD"] == made[user]
        others = [password for name, password in made.items() if name != user]
        assert not any(password in child.env.values() for password in others)


def assert_own_secrets_only(stack: Stack, environ: dict[str, str]) -> None:
    """What each running child really holds (/proc/<pid>/environ): its own secret only."""
    owners = {
        "RAGWAY_JWT_SECRET": "auth",
        "RAGWAY_OPENAI_API_KEYS": "inference_proxy",
        "RAGWAY_METRICS_TOKEN": "gateway",
    }
    assert stack.gateway is not None
    for child in [*stack.services, stack.gateway]:
        held = Path(f"/proc/{child.pid}/environ").read_bytes().split(b"\0")
        for name, owner in owners.items():
            secret = environ[name].encode()
            assert any(secret in entry for entry in held) == (child.name == owner), (
                child.name,
                name,
            )


def test_make_run_killed_with_sigkill_leaves_no_process_behind(launched: Launched) -> None:
    # Grandchildren too: the proxy's spare sandbox workers, started once it serves.
    deadline = time.monotonic() + 30
    while True:
        tree = descendants(launched.process.pid)
        commands = " ".join(command_line(pid) for pid in tree)
        if "sandbox_worker" in commands or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for program in ("sandbox_worker", "nats-server", "llama-server", *SERVICE_MODULES):
        assert program in commands

    launched.process.kill()  # no cleanup runs: the children stop on their own
    launched.process.wait()
    try:
        assert wait_until_gone(tree, 20) == []
    finally:
        for pid in tree:  # never leave a stack behind, even when the test fails
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


async def test_a_user_signed_up_before_a_restart_can_sign_in_after_it(
    tmp_path: Path, http: aiohttp.ClientSession, llama_server: str
) -> None:
    # A configured backend: the launcher must not start a second llama-server. Only the
    # services this test needs (the first test starts them all), to keep restarts quick.
    environ = clean_environ(
        RAGWAY_OPENAI_API_BASE_URLS=llama_server,
        RAGWAY_HEALTH_SERVICES="auth,inference-proxy",
        # one secret per service in the launcher's environment: each child sees its own only
        RAGWAY_JWT_SECRET=f"launcher-test-{uuid.uuid4().hex}",
        RAGWAY_OPENAI_API_KEYS=f"sk-launcher-test-{uuid.uuid4().hex[:12]}",
        RAGWAY_METRICS_TOKEN=f"metrics-{uuid.uuid4().hex[:12]}",
    )
    email = f"grace-{uuid.uuid4().hex[:8]}@example.test"

    def settings() -> StackSettings:
        chosen = free_stack_settings(tmp_path / "data")
        chosen.services = "auth,inference_proxy"
        return chosen

    first = Stack(settings(), environ)
    await first.astart()
    try:
        assert first.llama is None
        # A service that dies is restarted by the supervisor (and answers again).
        auth = next(child for child in first.services if child.name == "auth")
        crashed_pid = auth.pid
        auth.signal_group(signal.SIGKILL)
        assert auth.process is not None
        await asyncio.to_thread(auth.process.wait, 10)
        status, session = await asyncio.to_thread(
            signup_while_supervising,
            first,
            f"{first.url}/api/v1/auths/signup",
            {"name": "Grace", "email": email, "password": PASSWORD},
        )
        assert status == 200, session
        assert auth.running() and auth.pid != crashed_pid
    finally:
        await first.astop()
    assert wait_until_gone(set(first.pids()), 5) == []

    users_file = tmp_path / "data" / "nats-users.json"
    made = json.loads(await asyncio.to_thread(users_file.read_text))
    second = Stack(settings(), environ)
    await second.astart()
    try:
        assert_own_credentials_only(second, users_file, made)
        assert_own_secrets_only(second, environ)
        assert await connect_refused(second.nats.url)  # no credentials, no NATS
        status, again = await call(
            http,
            "POST",
            f"{second.url}/api/v1/auths/signin",
            json={"email": email, "password": PASSWORD},
        )
        assert status == 200, again
        assert (again["id"], again["role"]) == (session["id"], "admin")
        status, me = await call(http, "GET", f"{second.url}/api/v1/auths/", again["token"])
        assert (status, me["email"]) == (200, email)
    finally:
        await second.astop()
