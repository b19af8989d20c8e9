"""The pool: kept-alive connections per (scheme, host, port), at most `limit` requests in
flight, through a proxy where the environment says so.

A connection goes back to the pool only after its body ended cleanly (its length
reached, the chunked terminator read, or a body-less answer) and the backend did not ask
to close it; anything else closes it. TLS goes through `create_connection(ssl=...)`, or
`start_tls` inside a proxy's CONNECT tunnel. Redirects are never followed.

Retries (RFC 9112 9.3.1): a kept-alive connection the backend closed just as it was
reused, before any byte of an answer, is retried once on a new connection only when the
method is idempotent (GET, HEAD, PUT, DELETE, OPTIONS, TRACE). A POST is never sent
twice: the backend may have started a generation or an `/api/pull` already; the caller
gets `BackendDisconnected` saying so.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

from inference_proxy.backend_http.errors import (
    BackendConnectError,
    BackendDisconnected,
    BackendHTTPError,
)
from inference_proxy.backend_http.proxies import Proxy, ProxyTable
from inference_proxy.backend_http.response import BackendResponse, _Connection

_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+").fullmatch  # an RFC 9110 token
# methods whose requests carry no Content-Length when they have no content (RFC 9110 8.6)
_NO_CONTENT_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
# methods a client may send again after a connection failed (RFC 9110 9.2.2)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
# what may stay as it is in a request target; the rest is percent-encoded (a space, a
# control character, non-ASCII text from a decoded query)
_TARGET_SAFE = "!$&'()*+,/:;=?@~%[]"


class _Target:
    """A backend URL, parsed once: where to connect and what to write."""

    __slots__ = ("host", "host_header", "key", "path", "port", "proxy", "tls")

    def __init__(self, url: str, proxies: ProxyTable) -> None:
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
        self.proxy = proxies.for_target(parts.scheme, self.host) if proxies else None
        if self.proxy is not None and not self.tls:
            # a forward proxy is sent the absolute form (RFC 9112 3.2.2)
            self.path = f"http://{self.host_header}{self.path}"

    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class BackendPool:
    """Keep-alive HTTP/1.1 connections to the backends, at most `limit` in use at once;
    an idle connection is closed after `keepalive_seconds`. `proxies`: `http`, `https`
    and `no` settings (see `proxies_from_env`); none by default."""

    def __init__(
        self,
        *,
        limit: int = 256,
        keepalive_seconds: float = 30.0,
        connect_timeout: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        user_agent: str = "ragway",
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._limit = limit
        self._keepalive = keepalive_seconds
        self._connect_timeout = connect_timeout
        self._ssl = ssl_context
        self._user_agent = user_agent
        self._proxies = ProxyTable(proxies or {})
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
        (identity), Content-Length and Proxy-Authorization, which callers leave out. A
        GET, HEAD or DELETE without a body is sent without Content-Length. Raises
        BackendHTTPError subclasses (or TimeoutError for the connect timeout), ValueError
        for a URL or header that cannot be sent; bound the wait for the answer with a
        timeout around the call."""
        if self._closed:
            raise BackendConnectError("The backend client is closed")
        if not _METHOD(method):
            raise ValueError(f"Not an HTTP method: {method!r}")
        target = self._targets.get(url)
        if target is None:
            target = _Target(url, self._proxies)
            if len(self._targets) < 1024:
                self._targets[url] = target
        lines = [
            f"{method} {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
            f"User-Agent: {self._user_agent}\r\nAccept: */*\r\nAccept-Encoding: identity\r\n"
        ]
        if body or method not in _NO_CONTENT_METHODS:
            lines.append(f"Content-Length: {len(body)}\r\n")
        if target.proxy is not None and target.proxy.authorization and not target.tls:
            lines.append(f"Proxy-Authorization: {target.proxy.authorization}\r\n")
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
        # most likely the backend dropped an idle connection (its keep-alive ran out
        # first), but it may have received the request.
        if method not in IDEMPOTENT_METHODS:
            raise BackendDisconnected(
                "The backend closed a kept-alive connection before answering; "
                f"a {method} is not sent twice (it may have been received)"
            )
        response = await self._send(target, request, reuse=False, head=head)
        assert response is not None
        return response

    async def _send(
        self, target: _Target, request: bytes, *, reuse: bool, head: bool
    ) -> BackendResponse | None:
        """The response once its head arrived; None when a reused connection closed
        before answering anything."""
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
        context: ssl.SSLContext | None = None
        if target.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        conn = _Connection(target.key)
        proxy = target.proxy
        try:
            async with asyncio.timeout(self._connect_timeout):
                if proxy is None:
                    await self._open(conn, target.host, target.port, context)
                else:  # to the proxy in the clear; TLS to the backend inside a tunnel
                    await self._open(conn, proxy.host, proxy.port, None)
                    if context is not None:
                        await self._tunnel(conn, target, proxy, context)
        except OSError as exc:  # refused, unresolvable, TLS failures (ssl.SSLError)
            conn.close()
            raise BackendConnectError(str(exc)) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    async def _open(
        self,
        conn: _Connection,
        host: str,
        port: int,
        context: ssl.SSLContext | None,
    ) -> None:
        transport, _ = await asyncio.get_running_loop().create_connection(
            lambda: conn, host, port, ssl=context, server_hostname=host if context else None
        )
        # uvloop may call connection_made after create_connection returned
        conn.transport = transport

    async def _tunnel(
        self, conn: _Connection, target: _Target, proxy: Proxy, context: ssl.SSLContext
    ) -> None:
        """CONNECT through the proxy, then TLS to the backend inside the tunnel."""
        authority = target.authority()
        lines = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
        if proxy.authorization:
            lines += f"Proxy-Authorization: {proxy.authorization}\r\n"
        answer = BackendResponse(conn, self, head=True)  # a CONNECT's 2xx has no body
        conn.response = answer
        try:
            conn.transport.write(f"{lines}\r\n".encode("latin-1"))  # type: ignore[union-attr]
            await answer._head()
        except BackendHTTPError as exc:
            raise BackendConnectError(f"The proxy {proxy.host}:{proxy.port} failed: {exc}") from exc
        finally:
            answer._detach()
        if not 200 <= answer.status < 300:
            raise BackendConnectError(
                f"The proxy {proxy.host}:{proxy.port} refused the tunnel to {authority} "
                f"(HTTP {answer.status})"
            )
        loop = asyncio.get_running_loop()
        conn.transport = await loop.start_tls(
            conn.transport,  # type: ignore[arg-type]
            conn,
            context,
            server_hostname=target.host,
        )

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
