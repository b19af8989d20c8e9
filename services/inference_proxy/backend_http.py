"""A lean HTTP/1.1 client for every request of the proxy to the model backends.

aiohttp's client was a third of the proxy's CPU per streamed chat: a StreamReader with
a future per read, ~26 `data_received`/`feed_data`/`resume_reading` calls per stream, the
ClientResponse and timer machinery. The proxy needs much less: one request (a chat POST,
an Ollama pass-through of any method, a model list GET), the status and headers parsed
once, then body bytes handed on as they arrive. This client is an `asyncio.Protocol` per
connection that parses the head once and de-chunks the body inline, with one keep-alive
pool per (scheme, host, port) shared by all of them. Redirects are never followed.

A connection goes back to the pool only after its body ended cleanly (Content-Length
reached, or the chunked terminator read) and the backend did not ask to close it;
anything else closes it. TLS goes through `create_connection(ssl=...)`.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

MAX_HEAD_BYTES = 64 * 1024
MAX_LINE_BYTES = 8 * 1024  # a chunk-size or trailer line
HIGH_WATER_BYTES = 256 * 1024  # unread body bytes before the socket stops being read


class BackendHTTPError(Exception):
    """The backend connection failed; the subclasses say how."""


class BackendConnectError(BackendHTTPError):
    """No connection could be made (refused, unresolvable, TLS handshake failed)."""


class BackendDisconnected(BackendHTTPError):
    """The connection closed before the response, or its body, was complete."""


class BackendProtocolError(BackendHTTPError):
    """The backend's bytes are not an HTTP/1.x response."""


# body framing states
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
# a whole chunk-size line: hex size, optional extensions, line end
_SIZE_LINE = re.compile(rb"([0-9a-fA-F]{1,15})[ \t]*(?:;[^\r\n]*)?\r\n").match
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+").fullmatch  # an RFC 9110 token
# methods whose requests carry no Content-Length when they have no content (RFC 9110 8.6)
_NO_CONTENT_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
# what may stay as it is in a request target; the rest is percent-encoded (a space, a
# control character, non-ASCII text from a decoded query)
_TARGET_SAFE = "!$&'()*+,/:;=?@~%[]"


class BackendResponse:
    """One response: `status` and `headers` (lower-case names) once `request` returns,
    then the body through `readany` / `read`; `release` or `close` it exactly once."""

    __slots__ = (
        "_body",
        "_buf",
        "_conn",
        "_error",
        "_got_bytes",
        "_keep_alive",
        "_no_body",
        "_paused",
        "_pool",
        "_remaining",
        "_size",
        "_state",
        "_waiter",
        "done",
        "headers",
        "status",
    )

    def __init__(self, conn: _Connection, pool: BackendPool, *, head: bool = False) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.done = False  # released or closed
        self._conn = conn
        self._pool = pool
        self._state = _HEAD
        self._buf = bytearray()  # a head or framing line being assembled
        self._remaining = 0
        self._body: list[bytes] = []  # body bytes not read yet
        self._size = 0
        self._error: BackendHTTPError | None = None
        self._got_bytes = False  # any byte of this response arrived
        self._keep_alive = True
        self._no_body = head  # the answer to a HEAD request has no body, whatever it says
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None

    # --- reading ------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        """The body ended cleanly (its bytes may still be unread)."""
        return self._state == _DONE

    def buffered(self) -> bytes:
        """The body bytes that already arrived, without waiting (b"" when none)."""
        body = self._body
        if not body:
            return b""
        data = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        self._size = 0
        if self._paused:
            self._paused = False
            self._conn.resume_reading()
        return data

    async def readany(self) -> bytes:
        """The next body bytes (whatever arrived); b"" once the body ended cleanly."""
        while not self._body:
            if self._state == _DONE:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait()
        return self.buffered()

    async def read(self) -> bytes:
        """The whole (rest of the) body."""
        parts = []
        while data := await self.readany():
            parts.append(data)
        return b"".join(parts)

    async def wait_end(self) -> bool:
        """Discard body bytes until the body ends; False when the connection broke."""
        while self._state != _DONE:
            if self._error is not None:
                return False
            self.buffered()
            await self._wait()
        self.buffered()
        return True

    async def _head(self) -> None:
        while self._state == _HEAD:
            if self._error is not None:
                raise self._error
            await self._wait()

    async def _wait(self) -> None:
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- ending -------------------------------------------------------------------

    def release(self) -> None:
        """Hand the connection back for reuse when the body ended cleanly, else close."""
        if self.done:
            return
        self.done = True
        conn = self._conn
        conn.response = None
        if self._state == _DONE and self._keep_alive and not conn.closed:
            self._pool._put_back(conn)
        else:
            conn.close()
        self._pool._slots.release()

    def close(self) -> None:
        """Close the connection (a backend stops generating when its client leaves)."""
        if self.done:
            return
        self.done = True
        self._conn.response = None
        self._conn.close()
        self._pool._slots.release()

    # --- parsing (called by the protocol) -----------------------------------------

    def _feed(self, data: bytes) -> None:
        self._got_bytes = True
        try:
            if self._state == _HEAD:
                buf = self._buf
                buf += data
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise BackendProtocolError("The response head is too large")
                    return
                head, data = bytes(buf[:end]), bytes(buf[end + 4 :])
                buf.clear()
                self._parse_head(head)
                if self._state == _HEAD:  # an interim 1xx response: the real one follows
                    if data:
                        self._feed(data)
                    return
                self._wake()
            if data:
                self._body_bytes(data)
        except BackendProtocolError as exc:
            self._fail(exc)

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3:
            raise BackendProtocolError("The backend did not answer with HTTP/1.x")
        try:
            status = int(parts[1])
        except ValueError:
            raise BackendProtocolError("The backend sent a malformed status") from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise BackendProtocolError("The backend sent a malformed header")
            key = name.decode("latin-1").lower()
            text = value.strip().decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        if 100 <= status < 200:
            if status == 101:
                raise BackendProtocolError("The backend switched protocols")
            return
        self.status = status
        self.headers = headers
        connection = headers.get("connection", "").lower()
        if parts[0] == b"HTTP/1.0":
            self._keep_alive = "keep-alive" in connection
        else:
            self._keep_alive = "close" not in connection
        encoding = headers.get("transfer-encoding")
        if self._no_body or status in (204, 304):
            self._finish()
        elif encoding is not None:
            if encoding.rsplit(",", 1)[-1].strip().lower() == "chunked":
                self._state = _CHUNK_SIZE
            else:  # some other final coding: the body runs until the connection closes
                self._state = _UNTIL_CLOSE
                self._keep_alive = False
        elif "content-length" in headers:
            length = headers["content-length"]
            if not length.isdigit():
                raise BackendProtocolError("The backend sent a malformed Content-Length")
            self._remaining = int(length)
            self._state = _LENGTH
            if not self._remaining:
                self._finish()
        else:
            self._state = _UNTIL_CLOSE
            self._keep_alive = False

    def _body_bytes(self, data: bytes) -> None:
        """De-frame `data` by position (no copies of the rest per chunk); what it holds
        of the body is handed on as one piece."""
        pos, end = 0, len(data)
        pieces: list[bytes] = []
        try:
            while pos < end:
                state = self._state
                if state in (_CHUNK_DATA, _LENGTH):
                    take = self._remaining
                    if take > end - pos:
                        take = end - pos
                    pieces.append(data if take == end else data[pos : pos + take])
                    pos += take
                    self._remaining -= take
                    if self._remaining:
                        continue
                    if state == _LENGTH:
                        self._finish()
                        continue
                    # the common case: the chunk's CRLF and the next size line are here
                    if data.startswith(b"\r\n", pos):
                        match = _SIZE_LINE(data, pos + 2)
                        if match is not None:
                            pos = match.end()
                            self._remaining = int(match.group(1), 16)
                            if not self._remaining:
                                self._state = _TRAILERS
                            continue
                    self._state = _CHUNK_CRLF
                elif state in (_CHUNK_SIZE, _TRAILERS):
                    newline = data.find(b"\n", pos)
                    if newline < 0:
                        self._buf += data[pos:]
                        if len(self._buf) > MAX_LINE_BYTES:
                            raise BackendProtocolError("The backend sent a malformed chunk")
                        return
                    if self._buf:  # the line began in an earlier read
                        self._buf += data[pos:newline]
                        line = bytes(self._buf)
                        self._buf.clear()
                    else:
                        line = data[pos:newline]
                    pos = newline + 1
                    if line.endswith(b"\r"):
                        line = line[:-1]
                    if state == _TRAILERS:
                        if not line:
                            self._finish()
                        continue  # a trailer field: ignored
                    size = line.split(b";", 1)[0].strip()
                    if not size or not _HEX_DIGITS.issuperset(size):
                        raise BackendProtocolError("The backend sent a malformed chunk size")
                    self._remaining = int(size, 16)
                    self._state = _CHUNK_DATA if self._remaining else _TRAILERS
                elif state == _CHUNK_CRLF:  # "\r\n" (or a bare "\n") after a chunk's data
                    byte = data[pos]
                    pos += 1
                    if byte == 10:
                        self._buf.clear()
                        self._state = _CHUNK_SIZE
                    elif byte == 13 and not self._buf:
                        self._buf.append(13)
                    else:
                        raise BackendProtocolError("The backend sent a malformed chunk")
                elif state == _UNTIL_CLOSE:
                    pieces.append(data[pos:] if pos else data)
                    return
                else:  # _DONE: bytes after the response; the connection is not reusable
                    self._keep_alive = False
                    return
        finally:
            if pieces:
                self._push(pieces[0] if len(pieces) == 1 else b"".join(pieces))

    def _push(self, data: bytes) -> None:
        self._body.append(data)
        self._size += len(data)
        if self._size > HIGH_WATER_BYTES and not self._paused:
            self._paused = True
            self._conn.pause_reading()
        self._wake()

    def _finish(self) -> None:
        self._state = _DONE
        self._wake()

    def _fail(self, error: BackendHTTPError) -> None:
        if self._error is None:
            self._error = error
        self._keep_alive = False
        self._conn.close()
        self._wake()

    def _lost(self) -> None:
        if self._state == _UNTIL_CLOSE:
            self._finish()  # a close-delimited body ends here
        elif self._state != _DONE:
            self._fail(BackendDisconnected("The backend closed the connection"))


class _Connection(asyncio.Protocol):
    __slots__ = ("closed", "idle_since", "key", "response", "transport")

    def __init__(self, key: tuple[str, str, int]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.response: BackendResponse | None = None
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:
            self.close()  # bytes nobody asked for: this connection cannot be trusted
            return
        response._feed(data)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.response is not None:
            self.response._lost()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()


class _Target:
    __slots__ = ("host", "host_header", "key", "path", "port", "tls")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Not an http(s) URL: {url}")
        self.tls = parts.scheme == "https"
        default_port = 443 if self.tls else 80
        self.host = parts.hostname
        self.port = parts.port or default_port
        self.key = (parts.scheme, self.host, self.port)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if self.port == default_port else f"{host}:{self.port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.path = quote(target, safe=_TARGET_SAFE)


class BackendPool:
    """Keep-alive HTTP/1.1 connections to the backends, at most `limit` in use at once;
    an idle connection is closed after `keepalive_seconds`."""

    def __init__(
        self,
        *,
        limit: int = 256,
        keepalive_seconds: float = 30.0,
        connect_timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        user_agent: str = "ragway",
    ) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._limit = limit
        self._keepalive = keepalive_seconds
        self._connect_timeout = connect_timeout
        self._ssl = ssl_context
        self._user_agent = user_agent
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._targets: dict[str, _Target] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> BackendResponse:
        """Send a POST (see `request`)."""
        return await self.request("POST", url, body, headers)

    async def request(
        self,
        method: str,
        url: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> BackendResponse:
        """Send a request; return once the status and headers arrived (body still to read).

        `headers` are sent as given, after Host, User-Agent, Accept, Accept-Encoding
        (identity) and Content-Length, which callers leave out. A GET, HEAD or DELETE
        without a body is sent without Content-Length. Raises BackendHTTPError subclasses
        (or TimeoutError for the connect timeout), ValueError for a URL or header that
        cannot be sent; bound the wait for the answer with a timeout around the call."""
        if self._closed:
            raise BackendConnectError("The backend client is closed")
        if not _METHOD(method):
            raise ValueError(f"Not an HTTP method: {method!r}")
        target = self._targets.get(url)
        if target is None:
            target = _Target(url)
            if len(self._targets) < 1024:
                self._targets[url] = target
        lines = [
            f"{method} {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
            f"User-Agent: {self._user_agent}\r\nAccept: */*\r\nAccept-Encoding: identity\r\n"
        ]
        if body or method not in _NO_CONTENT_METHODS:
            lines.append(f"Content-Length: {len(body)}\r\n")
        if headers:
            for name, value in headers.items():
                if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
                    raise ValueError(f"A line break in the {name!r} header")
                lines.append(f"{name}: {value}\r\n")
        lines.append("\r\n")
        request = "".join(lines).encode("latin-1") + body
        head = method == "HEAD"
        response = await self._send(target, request, reuse=True, head=head)
        if response is not None:
            return response
        # A kept-alive connection closed as it was reused, before any byte of an answer:
        # the backend dropped an idle connection (its keep-alive ran out first). Once
        # more on a new connection, as HTTP clients do; a new one failing is reported.
        response = await self._send(target, request, reuse=False, head=head)
        assert response is not None
        return response

    async def _send(
        self, target: _Target, request: bytes, *, reuse: bool, head: bool
    ) -> BackendResponse | None:
        """The response once its head arrived; None when a reused connection closed
        before answering anything (worth one more try on a new connection)."""
        await self._slots.acquire()
        try:
            conn = self._reuse(target.key) if reuse else None
            reused = conn is not None
            if conn is None:
                conn = await self._connect(target)
        except BaseException:
            self._slots.release()
            raise
        response = BackendResponse(conn, self, head=head)
        conn.response = response
        try:
            conn.transport.write(request)  # type: ignore[union-attr]
            await response._head()
        except BackendDisconnected:
            response.close()
            if reused and not response._got_bytes:
                return None
            raise
        except BaseException:
            response.close()
            raise
        return response

    def _reuse(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        oldest = time.monotonic() - self._keepalive
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be stale
            if not conn.closed and conn.idle_since > oldest:
                return conn
            conn.close()
        return None

    async def _connect(self, target: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if target.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        conn = _Connection(target.key)
        try:
            async with asyncio.timeout(self._connect_timeout):
                transport, _ = await loop.create_connection(
                    lambda: conn,
                    target.host,
                    target.port,
                    ssl=context,
                    server_hostname=target.host if context is not None else None,
                )
        except OSError as exc:  # refused, unresolvable, TLS failures (ssl.SSLError)
            raise BackendConnectError(str(exc)) from exc
        # uvloop may call connection_made after create_connection returned
        conn.transport = transport
        return conn

    def _put_back(self, conn: _Connection) -> None:
        idle = self._idle.setdefault(conn.key, [])
        if self._closed or len(idle) >= self._limit:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self._keepalive, self._expire)

    def _expire(self) -> None:
        self._sweep = None
        oldest = time.monotonic() - self._keepalive
        left = False
        for idle in self._idle.values():
            keep = [conn for conn in idle if not conn.closed and conn.idle_since > oldest]
            for conn in idle:
                if conn not in keep:
                    conn.close()
            idle[:] = keep
            left = left or bool(keep)
        if left:
            self._sweep = asyncio.get_running_loop().call_later(self._keepalive, self._expire)

    def idle_connections(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    async def close(self) -> None:
        """Close the idle connections; responses in use close when released."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
