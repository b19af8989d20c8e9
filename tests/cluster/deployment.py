"""A scaled-out ragway on one machine: a 3-node NATS cluster and every service as processes.

Two gateways, three ingestion workers, one auth, one inference-proxy, one retrieval (its
embedded store allows one process per directory; a Qdrant server would allow more).
Every stream, KV bucket and object store has 3 replicas (`RAGWAY_KV_REPLICAS=3`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import nats

from contracts import subjects
from stack.nats_cluster import NatsCluster
from stack.nats_server import free_port
from stack.processes import ChildProcess, wait_http_ok
from tests.stack.support import clean_environ

JWT_SECRET = "cluster-test-secret-" + "x" * 32
PASSWORD = "correct horse battery"
MICRO_NAMES = {
    "auth": subjects.AUTH_SERVICE,
    "inference_proxy": subjects.INFERENCE_SERVICE,
    "retrieval": subjects.RETRIEVAL_SERVICE,
    "ingestion": subjects.INGESTION_SERVICE,
}
INGESTION_WORKERS = 3
GATEWAYS = 2
START_TIMEOUT_S = 90.0


@dataclass
class Deployment:
    cluster: NatsCluster
    log_dir: Path
    backend_url: str
    backend_key: str
    services: dict[str, ChildProcess] = field(default_factory=dict)
    gateway_urls: list[str] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return clean_environ(
            RAGWAY_NATS_URL=self.cluster.urls,
            RAGWAY_KV_REPLICAS="3",
            # debug: each service's one line per NATS request (with its request id) shows
            RAGWAY_LOG_LEVEL="debug",
            HF_HUB_OFFLINE="1",
            PYTHONUNBUFFERED="1",
            **extra,
        )

    def start_child(self, name: str, package: str, **extra: str) -> ChildProcess:
        child = ChildProcess(
            name,
            [sys.executable, "-m", package],
            self.env(**extra),
            log_path=self.log_dir / f"{name}.log",
        )
        child.start()
        self.services[name] = child
        return child

    def start(self) -> None:
        self.cluster.start()
        self.start_child("auth", "auth", RAGWAY_JWT_SECRET=JWT_SECRET)
        self.start_child(
            "inference_proxy",
            "inference_proxy",
            RAGWAY_OPENAI_API_BASE_URLS=self.backend_url,
            RAGWAY_OPENAI_API_KEYS=self.backend_key,
        )
        self.start_child("retrieval", "retrieval", RAGWAY_DATA_DIR=str(self.log_dir / "data"))
        for index in range(INGESTION_WORKERS):
            self.start_child(
                f"ingestion-{index}",
                "ingestion",
                RAGWAY_CONCURRENCY="1",
                # a killed worker's job goes to another one this soon
                RAGWAY_ACK_WAIT_SECONDS="4",
                RAGWAY_NAK_DELAY_SECONDS="0.5",
            )
        asyncio.run(self.wait_micro_services())
        for index in range(GATEWAYS):
            port = free_port()
            self.start_child(
                f"gateway-{index}", "gateway", RAGWAY_HOST="127.0.0.1", RAGWAY_PORT=str(port)
            )
            self.gateway_urls.append(f"http://127.0.0.1:{port}")
        for index, url in enumerate(self.gateway_urls):
            wait_http_ok(f"{url}/health", START_TIMEOUT_S, self.services[f"gateway-{index}"])

    async def wait_micro_services(self) -> None:
        """Every process answers on `$SRV.PING` (all three ingestion workers included)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        async with await_connection(self.cluster.urls) as nc:
            while True:
                for child in self.services.values():
                    if not child.running():
                        raise RuntimeError(f"{child.name} exited\n{child.log_tail()}")
                counts = {
                    name: len(await micro_replies(nc, f"$SRV.PING.{name}"))
                    for name in set(MICRO_NAMES.values())
                }
                wanted = {name: 1 for name in counts} | {subjects.INGESTION_SERVICE: 3}
                if all(counts[name] >= wanted[name] for name in counts):
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"services not ready: {counts}")
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        gateways = [c for n, c in self.services.items() if n.startswith("gateway")]
        for child in [*gateways, *(c for c in self.services.values() if c not in gateways)]:
            child.stop(grace=10)
        self.cluster.stop()

    def log_lines(self, name: str) -> list[dict[str, Any]]:
        """The JSON log lines a service wrote (a line that is not JSON fails the test)."""
        path = self.log_dir / f"{name}.log"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class await_connection:
    """`async with await_connection(urls) as nc`: a plain client for the test's own checks."""

    def __init__(self, urls: str) -> None:
        self.urls = urls.split(",")
        self.nc: nats.NATS | None = None

    async def __aenter__(self) -> nats.NATS:
        self.nc = await nats.connect(self.urls, name="cluster-test", connect_timeout=2)
        return self.nc

    async def __aexit__(self, *exc: object) -> None:
        assert self.nc is not None
        await self.nc.close()


async def micro_replies(nc: nats.NATS, subject: str, wait: float = 0.5) -> list[dict[str, Any]]:
    """Every instance's answer to a `$SRV.*` request (a plain request keeps only the first)."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(subject, b"", reply=inbox)
    replies: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await sub.next_msg(timeout=left)
            except nats.errors.TimeoutError:
                break
            if msg.data:  # not the server's empty 'no responders' status
                replies.append(json.loads(msg.data))
    finally:
        await sub.unsubscribe()
    return replies


@dataclass
class Client:
    """HTTP calls to one gateway as one signed-in user."""

    http: aiohttp.ClientSession
    url: str
    token: str = ""

    async def call(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> tuple[int, Any]:
        sent = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        sent.update(headers or {})
        async with self.http.request(method, self.url + path, headers=sent, **kw) as reply:
            if reply.content_type == "application/json":
                return reply.status, await reply.json()
            return reply.status, await reply.read()

    async def signup(self) -> dict[str, Any]:
        email = f"user-{uuid.uuid4().hex[:10]}@example.test"
        body = {"name": "Cluster User", "email": email, "password": PASSWORD}
        status, session = await self.call("POST", "/api/v1/auths/signup", json=body)
        assert status == 200, session
        self.token = session["token"]
        return dict(session)

    async def upload(
        self, content: bytes, name: str, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data = aiohttp.FormData()
        data.add_field("file", content, filename=name, content_type="text/markdown")
        return await self.call("POST", "/api/v1/files/", headers=headers, data=data)

    async def file_status(self, file_id: str) -> tuple[int, Any]:
        return await self.call("GET", f"/api/v1/files/{file_id}/process/status")

    async def chat(
        self, text: str, files: tuple[str, ...] = (), headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        body: dict[str, Any] = {
            "model": "gpt-fake",
            "messages": [{"role": "user", "content": text}],
            "stream": False,
        }
        if files:
            body["files"] = [{"type": "file", "id": file_id} for file_id in files]
        return await self.call("POST", "/api/chat/completions", headers=headers, json=body)


def document(seed: int, sections: int) -> bytes:
    """A markdown document of distinct sentences: several chunks, a few embedding batches."""
    parts = [f"# Handbook {seed}\n"]
    for section in range(sections):
        parts.append(f"\n## Part {section} of handbook {seed}\n\n")
        parts.append(
            " ".join(
                f"Rule {seed}-{section}-{line}: the cluster keeps replica {line % 3} of "
                f"record {seed * 1000 + section * 10 + line} safe across node failures."
                for line in range(12)
            )
        )
    return "".join(parts).encode()
