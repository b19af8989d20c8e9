"""One response on one kept-alive connection: llhttp (through httptools) frames it, this
module adds what a client must decide itself.

llhttp parses the status line, the headers, Content-Length and chunked framing, and
rejects malformed bytes. What it cannot know is left to `BackendResponse`:
- the answer to a HEAD (or to a proxy's CONNECT) has no body whatever its headers say:
  it ends with its head, and each response gets a parser of its own, so a parser left
  waiting for a HEAD's announced body is simply dropped;
- a body with neither length nor chunks runs until the connection closes (llhttp is
  never told the end of input): the close ends it cleanly, and the connection is spent;
- interim 1xx answers are skipped; 101 (switching protocols) is an error;
- obs-fold (a header value continued on the next line, RFC 9112 5.2): llhttp refuses it;
  the head is unfolded (each fold becomes a space) and parsed again, still strictly;
- Content-Encoding: see `encodings`.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

import httptools

from inference_proxy.backend_http.encodings import Decoder, decoders_for
from inference_proxy.backend_http.errors import (
    BackendDisconnected,
    BackendHTTPError,
    BackendProtocolError,
)

if TYPE_CHECKING:
    from inference_proxy.backend_http.pool import BackendPool

MAX_HEAD_BYTES = 64 * 1024
HIGH_WATER_BYTES = 256 * 1024  # unread body bytes before the socket stops being read

# states
_HEAD, _BODY, _UNTIL_CLOSE, _DONE = range(4)
_OBS_FOLD = re.compile(rb"\r\n[ \t]+")
_HEAD_END = b"\r\n\r\n"
_INTERIM = re.compile(rb"HTTP/1\.[01] 1\d\d[ \r]")


def _has_fold(parts: list[bytes]) -> bool:
    head = b"".join(parts)
    return b"\r\n " in head or b"\r\n\t" in head


class BackendResponse:
    """One response: `status` and `headers` (lower-case names) once `request` returns,
    then the body through `readany` / `read`; `release` or `close` it exactly once."""

    __slots__ = (
        "_body",
        "_conn",
        "_decoders",
        "_error",
        "_got_bytes",
        "_head_parts",
        "_head_size",
        "_interim",
        "_keep_alive",
        "_no_body",
        "_parser",
        "_paused",
        "_pool",
        "_refolding",
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
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self._head_parts: list[bytes] = []  # the bytes of the head, kept for an obs-fold
        self._head_size = 0
        self._refolding = False  # an obs-fold was met: gathering the whole head
        self._interim = False  # a 1xx head was parsed: its message ends, the real one follows
        self._decoders: list[Decoder] | None = None
        self._body: list[bytes] = []  # body bytes not read yet
        self._size = 0
        self._error: BackendHTTPError | None = None
        self._got_bytes = False  # any byte of this response arrived
        self._keep_alive = True
        self._no_body = head  # a HEAD's (or CONNECT's) answer has no body, whatever it says
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
        self._parser = None  # the parser holds this response's methods: no cycle is left
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
        self._parser = None
        self._conn.response = None
        self._conn.close()
        self._pool._slots.release()

    def _detach(self) -> None:
        """Leave the connection open for another use without giving it back (a proxy's
        tunnel answered: the connection turns into TLS to the backend)."""
        self.done = True
        self._parser = None
        self._conn.response = None

    # --- fed by the connection ----------------------------------------------------

    def _feed(self, data: bytes) -> None:
        self._got_bytes = True
        parser = self._parser
        if parser is None:
            return
        if self._state == _HEAD:
            self._head_parts.append(data)
            self._head_size += len(data)
            if self._refolding:
                self._refold()
                return
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(BackendProtocolError("The backend switched protocols"))
            return
        except httptools.HttpParserError as exc:
            self._parse_error(exc)
            return
        if self._state == _HEAD and self._head_size > MAX_HEAD_BYTES:
            self._fail(BackendProtocolError("The response head is too large"))
            return
        if self._size > HIGH_WATER_BYTES and not self._paused:
            self._paused = True
            self._conn.pause_reading()
        self._wake()

    def _parse_error(self, exc: httptools.HttpParserError) -> None:
        if isinstance(exc.__context__, BackendHTTPError):  # raised by a callback below
            self._fail(exc.__context__)
        elif self._state == _DONE:  # bytes after the response: not a reusable connection
            self._keep_alive = False
        elif self._state == _HEAD and not self._refolding and _has_fold(self._head_parts):
            self._refolding = True  # llhttp refuses obs-fold: unfold once the head is whole
            self._refold()
        else:
            self._fail(BackendProtocolError(f"The backend sent malformed HTTP: {exc}"))

    def _refold(self) -> None:
        """Parse the head again, each obs-fold replaced by a space, once it is whole (the
        interim 1xx heads before it included)."""
        raw = b"".join(self._head_parts)
        pos = 0
        while True:
            end = raw.find(_HEAD_END, pos)
            if end < 0:
                if len(raw) > MAX_HEAD_BYTES:
                    self._fail(BackendProtocolError("The response head is too large"))
                return  # the rest of the head is still to come
            if _INTERIM.match(raw, pos) is None:
                break
            pos = end + 4  # an interim head: the folded one comes after it
        self._head_parts = []
        self.headers = {}
        self._interim = False
        parser = self._parser = httptools.HttpResponseParser(self)
        try:
            parser.feed_data(_OBS_FOLD.sub(b" ", raw[:end]) + raw[end:])
        except httptools.HttpParserUpgrade:
            self._fail(BackendProtocolError("The backend switched protocols"))
            return
        except httptools.HttpParserError as exc:
            self._parse_error(exc)  # still malformed: reported (_refolding stays set)
            return
        self._refolding = False
        self._wake()

    # --- llhttp's callbacks ---------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._state != _HEAD:
            return  # a trailer field (ignored), or a stray response after this one
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = self.headers
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        if self._state != _HEAD:  # a second response after this one: nobody asked for it
            self._keep_alive = False
            return
        status = parser.get_status_code()
        if status < 200:
            if status == 101:
                raise BackendProtocolError("The backend switched protocols")
            self._interim = True  # 100 Continue, 103 Early Hints: the real answer follows
            self.headers = {}
            return
        self.status = status
        self._head_parts = []
        headers = self.headers
        if self._no_body:
            # llhttp would wait for a body its headers announce, and call a connection
            # without one spent: only the version and Connection decide here
            self._keep_alive = _persistent(parser.get_http_version(), headers)
            self._state = _DONE
            return
        self._keep_alive = parser.should_keep_alive()
        if status in (204, 304):
            self._state = _BODY  # llhttp ends it at once
            return
        framing = headers.get("transfer-encoding")
        if framing is not None:
            codings = [c.strip().lower() for c in framing.split(",")]
            for coding in codings:
                if coding not in ("chunked", "identity"):  # we send no TE: none is wanted
                    raise BackendProtocolError(
                        f"The backend answered with Transfer-Encoding {coding!r}, which "
                        "ragway does not accept"
                    )
            delimited = codings[-1] == "chunked"
        else:
            delimited = "content-length" in headers
        encoding = headers.get("content-encoding")
        if encoding is not None and (decoders := decoders_for(encoding)):
            self._decoders = decoders
            # what is read is the decoded body: these no longer describe it
            del headers["content-encoding"]
            headers.pop("content-length", None)
        if delimited:
            self._state = _BODY
        else:
            self._state = _UNTIL_CLOSE  # framed by the close (RFC 9112 6.3, rule 8)
            self._keep_alive = False

    def on_body(self, data: bytes) -> None:
        state = self._state
        if state in (_BODY, _UNTIL_CLOSE):
            if self._decoders is not None:
                data = self._decode(data)
                if not data:
                    return
            self._body.append(data)
            self._size += len(data)
        else:  # bytes after a body-less answer: the connection cannot be trusted
            self._keep_alive = False

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._state == _BODY:
            self._end()
        elif self._state == _DONE and not self._no_body:
            self._keep_alive = False  # a second response nobody asked for

    # --- internals ------------------------------------------------------------------

    def _decode(self, data: bytes) -> bytes:
        decoders = self._decoders
        assert decoders is not None
        for decoder in decoders:
            data = decoder.decode(data)
            if not data:
                break
        return data

    def _end(self) -> None:
        """The body ended by its framing (or by the close, when that frames it)."""
        decoders = self._decoders
        if decoders is not None:
            tail = b""
            for decoder in decoders:  # what one decoder held back goes through the next
                tail = (decoder.decode(tail) if tail else b"") + decoder.flush()
            if tail:
                self._body.append(tail)
                self._size += len(tail)
        self._state = _DONE

    def _fail(self, error: BackendHTTPError) -> None:
        if self._error is None:
            self._error = error
        self._keep_alive = False
        self._conn.close()
        self._wake()

    def _lost(self) -> None:
        if self._state == _UNTIL_CLOSE:
            try:
                self._end()  # a close-delimited body ends here
            except BackendProtocolError as exc:
                self._fail(exc)
                return
            self._wake()
        elif self._state != _DONE:
            self._fail(BackendDisconnected("The backend closed the connection"))


def _persistent(version: str, headers: dict[str, str]) -> bool:
    """Whether the connection stays open after this response (RFC 9112 9.3)."""
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    if version == "1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


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
