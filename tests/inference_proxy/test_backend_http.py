"""The proxy's HTTP/1.1 backend client against real local servers: keep-alive reuse,
body framings (Content-Length, chunked, close-delimited), chunk boundaries anywhere,
bodies that never end or break off, error bodies, TLS and flow control."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from inference_proxy.backend_http import (
    HIGH_WATER_BYTES,
    BackendConnectError,
    BackendDisconnected,
    BackendPool,
    BackendProtocolError,
    BackendResponse,
)
from inference_proxy.backend_http.response import _Connection
from tests.inference_proxy.conftest import http_server, raw_server, read_request


@pytest.fixture
async def pool() -> AsyncIterator[BackendPool]:
    backends = BackendPool(limit=8, keepalive_seconds=30, connect_timeout=2)
    yield backends
    await backends.close()


async def echo(request: web.Request) -> web.Response:
    return web.Response(body=b"got " + await request.read(), content_type="text/plain")


async def test_sequential_requests_reuse_one_connection_when_each_body_was_read(
    pool: BackendPool,
) -> None:
    async with http_server(echo) as (url, peers):
        for n in range(3):
            response = await pool.post(f"{url}/v1/x", f"body {n}".encode(), {"X-A": "1"})
            assert response.status == 200
            assert await response.read() == f"got body {n}".encode()
            response.release()
        assert len(peers) == 3 and len(set(peers)) == 1, peers
        assert pool.idle_connections() == 1


async def test_a_response_released_before_its_body_ended_closes_its_connection(
    pool: BackendPool,
) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"part")
        await asyncio.sleep(0.2)
        await response.write_eof()
        return response

    async with http_server(slow) as (url, peers):
        for _ in range(2):
            response = await pool.post(url, b"", {})
            assert await response.readany() == b"part"
            response.release()  # the body has not ended: not reusable
        assert len(set(peers)) == 2
        assert pool.idle_connections() == 0


def _chunked(pieces: list[bytes], trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces)
    return body + b"0\r\n" + trailer + b"\r\n"


def _response_bytes() -> tuple[bytes, bytes]:
    pieces = [b"data: one\n\n", b"x" * 300, b"\r\n\r\n", b"last"]
    head = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
    raw = head + b"Content-Type: text/event-stream\r\n\r\n" + _chunked(pieces, b"X-T: 1\r\n")
    return raw, b"".join(pieces)


def _parser(pool: BackendPool) -> tuple[_Connection, BackendResponse]:
    conn = _Connection(("http", "127.0.0.1", 1))
    response = BackendResponse(conn, pool)
    conn.response = response
    return conn, response


async def test_a_chunked_response_parses_the_same_when_split_at_any_byte(
    pool: BackendPool,
) -> None:
    raw, body = _response_bytes()
    for split in range(len(raw) + 1):
        conn, response = _parser(pool)
        for piece in (raw[:split], raw[split:]):
            if piece:
                conn.data_received(piece)
        assert response.status == 200, split
        assert response.headers["content-type"] == "text/event-stream"
        assert response.ended, split
        assert response.buffered() == body, split
        assert not conn.closed
    conn, response = _parser(pool)
    for byte in range(len(raw)):  # one byte at a time
        conn.data_received(raw[byte : byte + 1])
    assert response.ended and response.buffered() == body


async def test_chunked_content_length_and_close_delimited_bodies_over_sockets(
    pool: BackendPool,
) -> None:
    raw, body = _response_bytes()
    answers = {
        b"/chunked": raw,
        b"/length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"/close": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
    }

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while True:
                request = await read_request(reader)
                path = request.split(b" ")[1]
                for index in range(0, len(answers[path]), 7):  # many small segments
                    writer.write(answers[path][index : index + 7])
                    await writer.drain()
                if path == b"/close":
                    break
        writer.close()

    async with raw_server(answer) as url:
        for path, expected, reusable in (
            ("/chunked", body, True),
            ("/length", b"hello", True),
            ("/close", b"until close", False),
        ):
            response = await pool.post(url + path, b"{}", {})
            assert await response.read() == expected
            assert response.ended  # cleanly: its framing ended, the connection did not break
            assert await response.readany() == b""  # and nothing is left to read
            response.release()
            assert pool.idle_connections() == (1 if reusable else 0), path


async def test_a_body_that_never_ends_keeps_the_reader_waiting_until_closed(
    pool: BackendPool,
) -> None:
    started = asyncio.Event()
    gone = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first")
        started.set()
        assert request.transport is not None
        for _ in range(600):  # no end, until the client leaves (30 s at most)
            if request.transport is None or request.transport.is_closing():
                gone.set()
                break
            await asyncio.sleep(0.05)
        return response

    async with http_server(endless) as (url, _):
        response = await pool.post(url, b"", {})
        assert await response.readany() == b"first"
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await response.readany()
        response.close()  # the backend sees its client leave
        await asyncio.wait_for(gone.wait(), 5)
        assert pool.idle_connections() == 0


async def test_a_backend_that_resets_mid_body_fails_the_read(pool: BackendPool) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()  # RST, no terminator

    async with raw_server(answer) as url:
        response = await pool.post(url, b"", {})
        assert await response.readany() == b"hello"
        with pytest.raises(BackendDisconnected):
            await response.read()
        assert not response.ended
        response.release()  # closes: the body did not end
        assert pool.idle_connections() == 0


async def test_a_backend_that_closes_before_answering_is_a_disconnect(pool: BackendPool) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    async with raw_server(answer) as url:
        with pytest.raises(BackendDisconnected):
            await pool.post(url, b"", {})


async def test_garbage_instead_of_http_is_a_protocol_error(pool: BackendPool) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()

    async with raw_server(answer) as url:
        with pytest.raises(BackendProtocolError):
            await pool.post(url, b"", {})


@pytest.mark.parametrize("status", [400, 404, 429, 500, 503])
async def test_error_statuses_come_with_their_body_and_keep_the_connection(
    pool: BackendPool, status: int
) -> None:
    async def failing(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"error": {"message": f"no ({status})"}}, status=status)

    async with http_server(failing) as (url, peers):
        for _ in range(2):
            response = await pool.post(url, b"{}", {"Content-Type": "application/json"})
            assert response.status == status
            assert await response.read() == f'{{"error": {{"message": "no ({status})"}}}}'.encode()
            response.release()
        assert len(set(peers)) == 1


async def test_the_request_carries_host_length_and_the_given_headers(pool: BackendPool) -> None:
    seen: list[web.Request] = []
    bodies: list[bytes] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request)
        bodies.append(await request.read())
        return web.Response(text="ok")

    async with http_server(record) as (url, _):
        response = await pool.post(f"{url}/v1/chat/completions?a=1", b'{"k": 1}', {"X-Key": "v"})
        assert await response.read() == b"ok"
        response.release()
    request = seen[0]
    assert request.path_qs == "/v1/chat/completions?a=1"
    assert request.host == url.split("://")[1]
    assert request.headers["X-Key"] == "v" and request.headers["Content-Length"] == "8"
    assert bodies == [b'{"k": 1}']


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(
    pool: BackendPool,
) -> None:
    async with http_server(echo) as (url, peers):
        with pytest.raises(ValueError):
            await pool.post(url, b"", {"Authorization": "Bearer k\r\nX-Evil: 1"})
    assert peers == []


async def test_an_unreachable_backend_is_a_connect_error(pool: BackendPool) -> None:
    async with raw_server(lambda r, w: asyncio.sleep(0)) as url:
        pass  # closed: nothing listens on that port any more
    with pytest.raises(BackendConnectError):
        await pool.post(url, b"", {})


async def test_idle_connections_expire_and_are_not_reused() -> None:
    backends = BackendPool(limit=4, keepalive_seconds=0.1)
    try:
        async with http_server(echo) as (url, peers):
            for _ in range(2):
                response = await backends.post(url, b"", {})
                await response.read()
                response.release()
                assert backends.idle_connections() == 1
                await asyncio.sleep(0.35)
                assert backends.idle_connections() == 0  # swept after keepalive_seconds
            assert len(set(peers)) == 2
    finally:
        await backends.close()


async def test_a_slow_reader_pauses_the_socket_and_still_gets_every_byte(
    pool: BackendPool,
) -> None:
    blob = bytes(range(256)) * 8 * 1024  # 2 MiB

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for index in range(0, len(blob), 64 * 1024):
            await response.write(blob[index : index + 64 * 1024])
        await response.write_eof()
        return response

    async with http_server(big) as (url, _):
        response = await pool.post(url, b"", {})
        await asyncio.sleep(0.3)  # the reader lags: buffering stops near the high-water mark
        assert response._paused
        assert response._size < HIGH_WATER_BYTES + 512 * 1024
        assert await response.read() == blob
        response.release()
        assert pool.idle_connections() == 1


async def test_a_get_without_a_body_is_sent_without_a_length_and_reuses_the_connection(
    pool: BackendPool,
) -> None:
    heads: list[bytes] = []
    connections = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                heads.append(await read_request(reader))
                writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{"models":[]}')
                await writer.drain()
        writer.close()

    async with raw_server(answer) as url:
        for _ in range(2):
            response = await pool.request("GET", f"{url}/api/tags")
            assert (response.status, await response.read()) == (200, b'{"models":[]}')
            response.release()
    assert connections == 1
    assert len(heads) == 2
    for head in heads:
        assert head.startswith(b"GET /api/tags HTTP/1.1\r\n")
        assert b"content-length" not in head.lower()
        assert b"transfer-encoding" not in head.lower()


@pytest.mark.parametrize(
    ("method", "head"),
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"),
        ("HEAD", b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
    ],
)
async def test_answers_that_have_no_body_end_with_their_head_and_keep_the_connection(
    pool: BackendPool, method: str, head: bytes
) -> None:
    connections = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await read_request(reader)
            writer.write(head)  # what the head announces is not sent: there is no body
            await writer.drain()
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
            await writer.drain()
            await reader.read()
        writer.close()

    async with raw_server(answer) as url, asyncio.timeout(5):
        response = await pool.request(method, f"{url}/api/blobs/x")
        assert response.ended  # at once: nothing of a body is waited for
        assert await response.read() == b""
        response.release()
        assert pool.idle_connections() == 1
        response = await pool.request("GET", f"{url}/api/version")
        assert (response.status, await response.read()) == (200, b"next")
        response.release()
    assert connections == 1


async def test_a_body_with_neither_length_nor_chunks_is_read_to_eof_and_not_reused(
    pool: BackendPool,
) -> None:
    connections = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
        for piece in (b'{"models":', b" []}"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)
        writer.close()

    async with raw_server(answer) as url:
        for _ in range(2):
            response = await pool.request("GET", f"{url}/api/tags")
            assert await response.read() == b'{"models": []}'
            assert response.ended  # the close ended the body; it did not break it
            response.release()
            assert pool.idle_connections() == 0
    assert connections == 2


async def test_a_delete_sends_its_json_body_with_its_length_and_without_one_no_length(
    pool: BackendPool,
) -> None:
    seen: list[tuple[str, str | None, bytes]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.method, request.headers.get("Content-Length"), await request.read()))
        return web.Response(status=200)  # Ollama's answer to /api/delete: 200, no content

    body = b'{"model": "llama3.2:latest"}'
    json_type = {"Content-Type": "application/json"}
    async with http_server(record) as (url, peers):
        for method, content in (("DELETE", body), ("DELETE", b""), ("POST", b"")):
            response = await pool.request(method, f"{url}/api/delete", content, json_type)
            assert (response.status, await response.read()) == (200, b"")
            response.release()
        assert len(set(peers)) == 1
    # a POST always states its length, even 0 (RFC 9110 8.6)
    assert seen == [("DELETE", str(len(body)), body), ("DELETE", None, b""), ("POST", "0", b"")]


async def test_a_decoded_query_is_percent_encoded_in_the_request_line(pool: BackendPool) -> None:
    seen: list[web.Request] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request)
        return web.Response(text="ok")

    async with http_server(record) as (url, _):
        response = await pool.request("GET", f"{url}/api/tags?name=a b&x=é")
        assert (response.status, await response.read()) == (200, b"ok")
        response.release()
    assert seen[0].raw_path == "/api/tags?name=a%20b&x=%C3%A9"
    assert dict(seen[0].query) == {"name": "a b", "x": "é"}


async def test_a_method_that_is_not_a_token_is_refused_before_anything_is_sent(
    pool: BackendPool,
) -> None:
    async with http_server(echo) as (url, peers):
        with pytest.raises(ValueError):
            await pool.request("GET / HTTP/1.1\r\nX-Evil: 1\r\n\r\nGET", url)
    assert peers == []


async def test_https_backends_are_spoken_to_over_tls_with_reuse(
    tls_files: tuple[Path, Path],
) -> None:
    cert, key = tls_files
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))
    backends = BackendPool(ssl_context=trusting)
    try:
        async with http_server(echo, server_context) as (url, peers):
            for _ in range(2):
                response = await backends.post(url, b"secret", {})
                assert await response.read() == b"got secret"
                response.release()
            assert len(set(peers)) == 1
            # the default context does not trust a self-signed certificate
            strict = BackendPool()
            try:
                with pytest.raises(BackendConnectError):
                    await strict.post(url, b"", {})
            finally:
                await strict.close()
    finally:
        await backends.close()
