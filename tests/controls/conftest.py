"""Gateway controls against the e2e stack (auth, inference-proxy with the backend fakes,
a gateway) plus a second in-process gateway on the same NATS, and real gateway
processes for the tests that kill one."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from gateway.app import Settings as GatewaySettings
from gateway.app import serve as serve_gateway
from stack.nats_server import free_port
from tests.support.stack import Stack

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
async def second(stack: Stack, stack_nats_url: str) -> AsyncIterator[Stack]:
    """Another gateway on the same NATS: its own limit credit, the same counters."""
    settings = GatewaySettings(
        nats_url=stack_nats_url,
        port=0,
        request_timeout_seconds=5,
        completion_timeout_seconds=12,
        stream_idle_timeout_seconds=4,
    )
    async with serve_gateway(settings) as handle:
        other = Stack(url=handle.url, http=stack.http, gateway=handle)
        other._admin = await stack.admin()
        yield other


async def set_limit(api: Stack, **form: Any) -> dict[str, Any]:
    admin_auth = (await api.admin()).key_auth
    status, limit = await api.call("POST", "/api/v1/limits", headers=admin_auth, json=form)
    assert status == 200, limit
    return dict(limit)


@dataclass
class GatewayProcess:
    url: str
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


@contextmanager
def gateway_process(nats_url: str) -> Iterator[GatewayProcess]:
    """`python -m gateway` as a real process on a free port (killed after)."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RAGWAY_")},
        "RAGWAY_NATS_URL": nats_url,
        "RAGWAY_PORT": str(port),
        "RAGWAY_LOG_LEVEL": "warning",
        "PYTHONPATH": os.pathsep.join(
            [os.path.join(ROOT, "libs"), os.path.join(ROOT, "services"), ROOT]
        ),
    }
    process = subprocess.Popen([sys.executable, "-m", "gateway"], env=env, stdin=subprocess.DEVNULL)
    try:
        yield GatewayProcess(f"http://127.0.0.1:{port}", process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(10)


async def wait_listening(url: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"{url}/health") as reply:
                    await reply.read()
                    return
            except aiohttp.ClientError:
                assert loop.time() < deadline, f"{url} never answered"
                await asyncio.sleep(0.1)
