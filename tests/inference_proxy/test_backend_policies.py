"""The backend client's stated policies, on real local servers: no second sending of a
non-idempotent request, Content-Encoding decoded or refused by name, obs-fold tolerated,
HTTP(S)_PROXY / NO_PROXY honoured (plain proxying and CONNECT tunnels) through a small
forward proxy written here."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import importlib.util
import ssl
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from inference_proxy.backend_http import (
    BackendConnectError,
    BackendDisconnected,
    BackendPool,
    BackendProtocolError,
    BackendResponse,
    proxies_from_env,
)
from inference_proxy.backend_http.response import _Connection
from tests.inference_proxy.conftest import http_server, raw_server, read_request

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
async def pool() -> AsyncIterator[BackendPool]:
    backends = BackendPool(limit=8, keepalive_seconds=30, connect_timeout=2)
    yield backends
    await backends.close()


async def echo(request: web.Request) -> web.Response:
    return web.Response(body=b"got " + await request.read(), content_type="text/plain")


# --- retries ------------------------------------------------------------------------


async def _drop_the_second_request(
    method: str, pool: BackendPool
) -> tuple[list[bytes], int, BaseException | None]:
    """Two requests on one kept-alive connection; the server reads the second one and
    closes without a byte of answer (as a backend whose keep-alive just ran out)."""
    seen: list[bytes] = []
    connections = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            seen.append(await read_request(reader))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            if connections == 1:
                seen.append(await read_request(reader))  # read, never answered
        writer.close()

    failure: BaseException | None = None
    async with raw_server(answer) as url:
        response = await pool.request(method, f"{url}/api/pull", b"first")
        assert (response.status, await response.read()) == (200, b"ok")
        response.release()
        try:
            response = await pool.request(method, f"{url}/api/pull", b"second")
            assert (response.status, await response.read()) == (200, b"ok")
            response.release()
        except BackendDisconnected as exc:
            failure = exc
    return seen, connections, failure


async def test_a_post_dropped_unanswered_on_a_reused_connection_is_not_sent_again(
    pool: BackendPool,
) -> None:
    seen, connections, failure = await _drop_the_second_request("POST", pool)
    assert isinstance(failure, BackendDisconnected)
    assert "POST is not sent twice" in str(failure)
    assert sum(head.endswith(b"second") for head in seen) == 1  # the server saw it once
    assert connections == 1  # no new connection was opened to send it again


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_an_idempotent_request_dropped_on_a_reused_connection_is_sent_again(
    pool: BackendPool, method: str
) -> None:
    seen, connections, failure = await _drop_the_second_request(method, pool)
    assert failure is None
    assert sum(head.endswith(b"second") for head in seen) == 2  # once more, on a new one
    assert connections == 2


# --- Content-Encoding -----------------------------------------------------------------


def _chunked(pieces: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


async def _served(raw: bytes, pool: BackendPool, *, segment: int = 5) -> BackendResponse:
    """The response to one GET from a server that writes `raw` in small segments."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await read_request(reader)
            for index in range(0, len(raw), segment):
                writer.write(raw[index : index + segment])
                await writer.drain()
            await reader.read()
        writer.close()

    async with raw_server(answer) as url:
        return await pool.request("GET", f"{url}/api/tags")


@pytest.mark.parametrize(
    ("coding", "encoded"),
    [
        ("gzip", gzip.compress(b'{"models": ["a", "b"]}')),
        ("deflate", zlib.compress(b'{"models": ["a", "b"]}')),
        ("deflate", _raw_deflate(b'{"models": ["a", "b"]}')),  # as some servers send it
        ("gzip, deflate", zlib.compress(gzip.compress(b'{"models": ["a", "b"]}'))),
    ],
)
async def test_a_compressed_body_is_decoded_and_its_headers_say_so(
    pool: BackendPool, coding: str, encoded: bytes
) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n"
    response = await _served(head % (coding.encode(), len(encoded)) + encoded, pool)
    assert await response.read() == b'{"models": ["a", "b"]}'
    assert response.ended
    assert "content-encoding" not in response.headers  # they described the encoded bytes
    assert "content-length" not in response.headers
    response.release()
    assert pool.idle_connections() == 1  # framing and decoding both ended cleanly


async def test_a_gzipped_event_stream_is_decoded_event_by_event(pool: BackendPool) -> None:
    compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    events = [b'data: {"n": %d}\n\n' % n for n in range(3)]
    # each event flushed on its own, as a streaming server does
    pieces = [compressor.compress(e) + compressor.flush(zlib.Z_SYNC_FLUSH) for e in events]
    pieces.append(compressor.flush())
    served = asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n"
            % (len(pieces[0]), pieces[0])
        )
        await writer.drain()
        await served.wait()  # the first event is read before the rest is even sent
        writer.write(_chunked(pieces[1:]))
        await writer.drain()
        await reader.read()
        writer.close()

    async with raw_server(answer) as url, asyncio.timeout(5):
        response = await pool.request("GET", f"{url}/v1/stream")
        assert await response.readany() == events[0]
        served.set()
        assert await response.read() == b"".join(events[1:])
        response.release()


@pytest.mark.parametrize("coding", ["compress", "zstd", "br"])
async def test_an_encoding_that_cannot_be_decoded_is_refused_by_name(
    pool: BackendPool, coding: str
) -> None:
    if coding == "br" and any(importlib.util.find_spec(m) for m in ("brotli", "brotlicffi")):
        pytest.skip("a Brotli module is installed here: br is decoded")
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: 4\r\n\r\n\x00\x01\x02\x03"
    with pytest.raises(BackendProtocolError, match=f"Content-Encoding '{coding}'"):
        await _served(raw % coding.encode(), pool)


async def test_a_corrupt_gzip_body_fails_the_read_instead_of_passing_garbage(
    pool: BackendPool,
) -> None:
    body = b"\x1f\x8b\x08\x00garbage-that-is-not-deflate"
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body)
    response = await _served(raw + body, pool)
    with pytest.raises(BackendProtocolError, match="gzip body is corrupt"):
        await response.read()
    response.close()


async def test_a_transfer_coding_other_than_chunked_is_refused(pool: BackendPool) -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + _chunked([b"x"])
    with pytest.raises(BackendProtocolError, match="Transfer-Encoding 'gzip'"):
        await _served(raw, pool)


# --- obs-fold -----------------------------------------------------------------------


def _parser(pool: BackendPool) -> tuple[_Connection, BackendResponse]:
    conn = _Connection(("http", "127.0.0.1", 1))
    response = BackendResponse(conn, pool)
    conn.response = response
    return conn, response


FOLDED = (
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nX-Note: one\r\n two\r\n\tthree\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
)


async def test_a_folded_header_is_unfolded_wherever_the_head_is_split(pool: BackendPool) -> None:
    for split in range(len(FOLDED) + 1):
        conn, response = _parser(pool)
        for piece in (FOLDED[:split], FOLDED[split:]):
            if piece:
                conn.data_received(piece)
        assert response.status == 200, split
        assert response.headers["x-note"] == "one two three", split
        assert response.headers["content-type"] == "text/plain", split
        assert response.ended and response.buffered() == b"hello", split
        assert not conn.closed, split


async def test_a_folded_header_over_a_socket_keeps_the_connection(pool: BackendPool) -> None:
    response = await _served(FOLDED, pool, segment=3)
    assert response.headers["x-note"] == "one two three"
    assert await response.read() == b"hello"
    response.release()
    assert pool.idle_connections() == 1


async def test_a_malformed_head_is_still_refused_after_unfolding(pool: BackendPool) -> None:
    conn, response = _parser(pool)
    conn.data_received(b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nBad Name: x\r\n\r\n")
    assert conn.closed
    with pytest.raises(BackendProtocolError, match="malformed"):
        await response._head()


# --- proxies ------------------------------------------------------------------------


@dataclass
class ForwardProxy:
    url: str
    heads: list[bytes] = field(default_factory=list)  # the first request of each connection

    @property
    def request_lines(self) -> list[bytes]:
        return [head.split(b"\r\n", 1)[0] for head in self.heads]

    def header(self, index: int, name: bytes) -> bytes | None:
        for line in self.heads[index].split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def forward_proxy(*, refuse_connect: bool = False) -> AsyncIterator[ForwardProxy]:
    """A small HTTP forward proxy: absolute-form requests go to their origin (the request
    line rewritten to origin-form, then bytes piped both ways), CONNECT opens a tunnel."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        head = await reader.readuntil(b"\r\n\r\n")
        proxy.heads.append(head)
        method, target, version = head.split(b"\r\n", 1)[0].split(b" ")
        if method == b"CONNECT":
            if refuse_connect:
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
                await writer.drain()
                writer.close()
                return
            host, _, port = target.decode().rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        else:
            parts = urlsplit(target.decode())
            assert parts.hostname is not None and parts.port is not None
            up_reader, up_writer = await asyncio.open_connection(parts.hostname, parts.port)
            origin_form = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            rest = head.split(b"\r\n", 1)[1]
            up_writer.write(b"%s %s %s\r\n%s" % (method, origin_form.encode(), version, rest))
        writers.append(up_writer)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    proxy = ForwardProxy(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    try:
        yield proxy
    finally:
        server.close()
        for writer in writers:
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1)


@pytest.fixture
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


async def _get_twice(backends: BackendPool, url: str) -> list[bytes]:
    bodies = []
    for n in range(2):
        response = await backends.post(f"{url}/v1/chat/completions?n={n}", b"hi", {})
        bodies.append(await response.read())
        response.release()
    return bodies


async def test_http_proxy_from_the_environment_carries_plain_http_requests(
    clean_proxy_env: pytest.MonkeyPatch,
) -> None:
    async with forward_proxy() as proxy, http_server(echo) as (url, peers):
        clean_proxy_env.setenv("HTTP_PROXY", proxy.url.replace("://", "://ann:s%40cret@"))
        backends = BackendPool(proxies=proxies_from_env())
        try:
            assert await _get_twice(backends, url) == [b"got hi", b"got hi"]
        finally:
            await backends.close()
    # one kept-alive connection through the proxy; the absolute form, and the credentials
    assert proxy.request_lines == [f"POST {url}/v1/chat/completions?n=0 HTTP/1.1".encode()]
    assert proxy.header(0, b"proxy-authorization") == b"Basic " + base64.b64encode(b"ann:s@cret")
    assert len(peers) == 2 and len(set(peers)) == 1


async def test_no_proxy_sends_a_matching_backend_direct(
    clean_proxy_env: pytest.MonkeyPatch,
) -> None:
    async with forward_proxy() as proxy, http_server(echo) as (url, peers):
        clean_proxy_env.setenv("http_proxy", proxy.url)
        clean_proxy_env.setenv("NO_PROXY", "example.com,127.0.0.1")
        backends = BackendPool(proxies=proxies_from_env())
        try:
            assert await _get_twice(backends, url) == [b"got hi", b"got hi"]
        finally:
            await backends.close()
    assert proxy.heads == []
    assert len(peers) == 2  # both reached the backend, direct


async def test_without_proxy_settings_the_environment_is_not_read(
    clean_proxy_env: pytest.MonkeyPatch,
) -> None:
    async with forward_proxy() as proxy, http_server(echo) as (url, _):
        clean_proxy_env.setenv("HTTP_PROXY", proxy.url)
        backends = BackendPool()  # the service passes proxies_from_env(); the default: none
        try:
            assert await _get_twice(backends, url) == [b"got hi", b"got hi"]
        finally:
            await backends.close()
    assert proxy.heads == []


async def test_https_proxy_tunnels_tls_to_the_backend_with_connect(
    clean_proxy_env: pytest.MonkeyPatch, tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    async with forward_proxy() as proxy, http_server(echo, server_context) as (url, peers):
        clean_proxy_env.setenv("HTTPS_PROXY", proxy.url.replace("://", "://bob:pw@"))
        backends = BackendPool(
            proxies=proxies_from_env(), ssl_context=ssl.create_default_context(cafile=str(cert))
        )
        try:
            assert await _get_twice(backends, url) == [b"got hi", b"got hi"]
        finally:
            await backends.close()
    authority = url.split("://")[1]
    assert proxy.request_lines == [f"CONNECT {authority} HTTP/1.1".encode()]  # one tunnel
    assert proxy.header(0, b"proxy-authorization") == b"Basic " + base64.b64encode(b"bob:pw")
    assert len(peers) == 2 and len(set(peers)) == 1


async def test_a_proxy_that_refuses_the_tunnel_is_a_connect_error_naming_its_answer(
    tls_files: tuple[Path, Path],
) -> None:
    cert, _ = tls_files
    async with forward_proxy(refuse_connect=True) as proxy:
        backends = BackendPool(
            proxies={"https": proxy.url}, ssl_context=ssl.create_default_context(cafile=str(cert))
        )
        try:
            with pytest.raises(BackendConnectError, match=r"refused the tunnel .*HTTP 403"):
                await backends.post("https://127.0.0.1:9/v1/chat/completions", b"", {})
        finally:
            await backends.close()


def test_an_https_or_socks_proxy_url_is_ignored_like_aiohttp_does(
    clean_proxy_env: pytest.MonkeyPatch,
) -> None:
    from inference_proxy.backend_http.proxies import ProxyTable

    table = ProxyTable({"http": "socks5://127.0.0.1:1080", "https": "https://127.0.0.1:3128"})
    assert not table
    table = ProxyTable({"http": "127.0.0.1:3128"})  # no scheme: http, as curl reads it
    assert table.for_target("http", "backend.internal") is not None
    assert table.for_target("https", "backend.internal") is None
