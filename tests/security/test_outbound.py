"""No server-side request to an address the user controls: only the configured backends.

A listening socket on another loopback port stands for the attacker's server; whatever
users put in paths, `url_idx`, model names, bodies or uploaded documents, it must never
see a connection, and the configured Ollama backend must never see a path outside the
Ollama API.

Reviewed (no test needed): the inference-proxy builds every backend URL from its
configured base URLs plus a fixed API path (`/chat/completions`, `/models`, `/api/chat`,
`/api/tags`) or, for the pass-through, an allow-listed Ollama path; ingestion never
fetches (HTML links, DOCX relationships and PDF URIs are text to it). Functions and tools
run admin-installed code in the bubblewrap sandbox, with no network at all unless an
admin sets the plugin's RAGWAY_ALLOW_NETWORK valve (tests/security/test_sandbox.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import yarl

from tests.e2e.rag_helpers import settled
from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import OpenAIFake
from tests.security.conftest import upload
from tests.support.stack import Account, RagServices, Stack

pytestmark = pytest.mark.security


class Listener:
    """A TCP server on a free loopback port that only counts who connects."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    trap = Listener()
    server = await asyncio.start_server(trap._accept, "127.0.0.1", 0)
    trap.port = server.sockets[0].getsockname()[1]
    async with server:
        yield trap


async def _raw(stack: Stack, account: Account, method: str, raw_path: str, **kw: object) -> int:
    """Send the path exactly as written (no client-side `..` folding or re-quoting)."""
    url = yarl.URL(stack.url + raw_path, encoded=True)
    async with stack.http.request(method, url, headers=account.key_auth, **kw) as reply:  # type: ignore[arg-type]
        await reply.read()
        return reply.status


async def test_ollama_paths_and_indexes_cannot_name_another_server(
    stack: Stack,
    admin: Account,
    user: Account,
    listener: Listener,
    backend_fakes: tuple[OpenAIFake, OllamaFake],
) -> None:
    _, ollama = backend_fakes
    seen_before = len(ollama.requests)
    target = f"127.0.0.1:{listener.port}"
    attempts = [
        ("GET", f"/ollama/http://{target}/api/tags"),
        ("GET", f"/ollama/http:%2F%2F{target}%2Fapi%2Ftags"),
        ("GET", f"/ollama//{target}/api/tags"),
        ("GET", f"/ollama/@{target}/api/tags"),
        ("GET", "/ollama/api/tags/7"),  # url_idx beyond the configured list
        ("GET", "/ollama/api/tags/99999999999999999999"),
        ("GET", "/ollama/api/tags/-1"),
        ("GET", "/ollama/api/../../x"),
        ("GET", "/ollama/api/tags/../../../x"),
        ("GET", "/ollama/api/blobs/../../x"),
        ("GET", "/ollama/api/blobs/..%2F..%2Fx"),
        ("GET", "/ollama/api/blobs/%2e%2e/%2e%2e/x"),
        ("HEAD", "/ollama/api/blobs/sha256:00/../../../api/pull"),
        ("POST", f"/ollama/api/blobs/http://{target}/x"),
    ]
    for account in (user, admin):
        for method, path in attempts:
            status = await _raw(stack, account, method, path)
            assert status in (400, 403, 404), (account.role, method, path, status)
    assert listener.connections == 0
    forwarded = [r.path for r in ollama.requests[seen_before:]]
    assert forwarded == [], forwarded


async def test_model_names_that_are_urls_reach_no_one(
    stack: Stack, user: Account, listener: Listener
) -> None:
    ask = [{"role": "user", "content": "hi"}]
    for model in (listener.url, f"{listener.url}/v1", f"127.0.0.1:{listener.port}"):
        for path, body in (
            ("/api/chat/completions", {"model": model, "messages": ask}),
            ("/api/v1/chat/completions", {"model": model, "messages": ask, "stream": True}),
            ("/ollama/api/chat", {"model": model, "messages": ask, "stream": False}),
            ("/ollama/api/show", {"model": model}),
        ):
            status, _ = await stack.call("POST", path, headers=user.key_auth, json=body)
            assert 400 <= status < 500, (path, model, status)
    assert listener.connections == 0


async def test_links_in_uploaded_documents_are_not_fetched(
    stack: Stack, rag: RagServices, user: Account, listener: Listener
) -> None:
    page = (
        f'<html><head><link rel="stylesheet" href="{listener.url}/x.css">'
        f'<meta http-equiv="refresh" content="0; url={listener.url}/r"></head>'
        f'<body><img src="{listener.url}/i.png"><iframe src="{listener.url}/f"></iframe>'
        f'<p>See <a href="{listener.url}/a">this</a>.</p></body></html>'
    ).encode()
    record = await upload(stack, user, page, "links.html", "text/html")
    state = await settled(stack, user, record["id"])
    assert state["status"] == "completed", state
    assert listener.connections == 0
