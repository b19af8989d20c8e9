"""The whole stack as real processes (the launcher), driven over HTTP, for fault tests.

The model backend is the OpenAI fake in the test process; every timeout is short so a
fault shows within seconds. Faults are real: processes get SIGKILL/SIGTERM, nats-server
is stopped and started again on the same port and store directory.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from stack.launcher import Stack
from stack.processes import ChildProcess
from stack.settings import StackSettings
from tests.fakes.openai_fake import OpenAIFake
from tests.stack.support import clean_environ, free_stack_settings

T = TypeVar("T")

PASSWORD = "correct horse battery"
MODEL = "gpt-fake"

# Short bounds everywhere (each variable reaches every service that has the field).
FAST_TIMEOUTS = {
    "RAGWAY_REQUEST_TIMEOUT_SECONDS": "3",  # gateway -> services
    "RAGWAY_COMPLETION_TIMEOUT_SECONDS": "6",
    "RAGWAY_STREAM_IDLE_TIMEOUT_SECONDS": "4",
    "RAGWAY_HEALTH_TIMEOUT_SECONDS": "0.5",
    "RAGWAY_BACKEND_CONNECT_TIMEOUT_SECONDS": "1",
    "RAGWAY_BACKEND_TIMEOUT_SECONDS": "3",  # proxy -> model backend
    "RAGWAY_BACKEND_IDLE_TIMEOUT_SECONDS": "2",
    "RAGWAY_MODELS_CACHE_SECONDS": "60",
    "RAGWAY_ACK_WAIT_SECONDS": "3",  # a killed worker's job comes back after this
    "RAGWAY_NAK_DELAY_SECONDS": "0.2",
    "RAGWAY_RAG_WAIT_SECONDS": "5",
    "RAGWAY_SANDBOX_SPARES": "0",
    "RAGWAY_CHUNK_SIZE": "300",
    "RAGWAY_CHUNK_OVERLAP": "30",
    "RAGWAY_PASSWORD_TIME_COST": "1",
    "RAGWAY_PASSWORD_MEMORY_KIB": "8",
    "RAGWAY_PASSWORD_PARALLELISM": "1",
    "RAGWAY_JWT_SECRET": "reliability-" + "x" * 40,
}


@dataclass
class Account:
    id: str
    email: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class ProcessStack:
    """A launched stack plus an HTTP client and the helpers fault tests share."""

    stack: Stack
    http: aiohttp.ClientSession
    fake: OpenAIFake
    signed_up: Account | None = None
    extra: list[ChildProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.stack.url

    @property
    def admin(self) -> Account:
        """The first account signed up on this stack (so an admin)."""
        assert self.signed_up is not None
        return self.signed_up

    def child(self, name: str) -> ChildProcess:
        found = [c for c in [*self.stack.services, self.stack.gateway] if c and c.name == name]
        assert found, name
        return found[0]

    def start_child(self, package: str) -> ChildProcess:
        """One more `python -m <package>` with the stack's environment (a second worker)."""
        log_path = self.stack.data_dir / "logs" / f"{package}-{len(self.extra) + 2}.log"
        argv = [sys.executable, "-m", package]
        child = ChildProcess(package, argv, self.stack.child_env(package), log_path)
        child.start()
        self.extra.append(child)
        return child

    async def call(
        self,
        method: str,
        path: str,
        account: Account | None = None,
        timeout: float = 30.0,
        **kw: Any,
    ) -> tuple[int, Any]:
        headers = account.auth if account is not None else None
        async with self.http.request(
            method,
            self.url + path,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
            **kw,
        ) as reply:
            body = await reply.json() if reply.content_type == "application/json" else None
            return reply.status, body

    async def timed_call(
        self, method: str, path: str, account: Account | None = None, **kw: Any
    ) -> tuple[int, Any, float]:
        started = time.monotonic()
        status, body = await self.call(method, path, account, **kw)
        return status, body, time.monotonic() - started

    async def signup(self) -> Account:
        email = f"user-{uuid.uuid4().hex[:10]}@example.test"
        status, session = await self.call(
            "POST",
            "/api/v1/auths/signup",
            json={"name": "Reliable User", "email": email, "password": PASSWORD},
        )
        assert status == 200, session
        return Account(session["id"], email, session["token"])

    async def upload(self, account: Account, content: bytes, name: str) -> dict[str, Any]:
        data = aiohttp.FormData()
        data.add_field("file", content, filename=name, content_type="text/markdown")
        status, record = await self.call("POST", "/api/v1/files/", account, data=data)
        assert status == 200, record
        return dict(record)

    async def file_status(self, account: Account, file_id: str) -> str:
        status, body = await self.call("GET", f"/api/v1/files/{file_id}/process/status", account)
        assert status == 200, body
        return str(body["status"])

    async def stop(self) -> None:
        for child in self.extra:
            await asyncio.to_thread(child.stop, 5.0)
        await self.stack.astop()


def process_stack_settings(data_dir: Path, services: str | None = None) -> StackSettings:
    settings = free_stack_settings(data_dir)
    settings.stop_timeout_s = 10.0
    if services is not None:
        settings.services = services
    return settings


def stack_environ(fake: OpenAIFake, **extra: str) -> dict[str, str]:
    return clean_environ(
        RAGWAY_OPENAI_API_BASE_URLS=fake.base_url,
        RAGWAY_OPENAI_API_KEYS=fake.api_key or "",
        **FAST_TIMEOUTS,
        **extra,
    )


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    within: float,
    interval: float = 0.1,
) -> T:
    """Call `probe` until `accept` holds for its result; fail with the last one after `within`."""
    deadline = time.monotonic() + within
    while True:
        try:
            result = await probe()
        except (aiohttp.ClientError, TimeoutError) as exc:
            result = exc  # type: ignore[assignment]
        else:
            if accept(result):
                return result
        assert time.monotonic() < deadline, f"still {result!r} after {within} s"
        await asyncio.sleep(interval)


def markdown_file(index: int, sections: int = 4, sentences: int = 40) -> bytes:
    """A small markdown file, distinct per index, that makes several chunks at chunk_size 300."""
    lines = [f"# Document {index}\n"]
    for part in range(sections):
        lines.append(f"## Part {part} of document {index}\n")
        lines.append(
            " ".join(
                f"word{index}x{part}x{n} sentence about topic {n % 7}." for n in range(sentences)
            )
            + "\n"
        )
    return "\n".join(lines).encode()
