"""Typed request/reply over NATS: msgspec in, msgspec out, errors as RagwayError.

The request id of the current context travels in a header so every service logs it;
with tracing on (common.tracing), each request is a client span whose W3C `traceparent`
travels beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
from collections.abc import Iterator
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from common import tracing
from common.codec import decode, encode
from common.errors import ERROR_CODES, RagwayError
from common.inbox import Mailbox
from contracts.endpoint import Endpoint, Event, M, Rep, Req
from contracts.subjects import ping_subject

REQUEST_ID_HEADER = "Ragway-Request-Id"
USER_ID_HEADER = "Ragway-User-Id"
ERROR_HEADER = "Nats-Service-Error"
ERROR_CODE_HEADER = "Nats-Service-Error-Code"
# nats-server's answer to a request nobody subscribes to (a status-only message)
STATUS_HEADER = "Status"
NO_RESPONDERS_STATUS = "503"

NO_RESPONDERS_RETRY_SECONDS = 0.05
BUS_UNAVAILABLE = "The message bus is unavailable"
# NATS failures that mean "the bus (or JetStream) is away for now", wherever they surface
BUS_FAILURES: tuple[type[Exception], ...] = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.NoRespondersError,
    nats.js.errors.ServiceUnavailableError,  # JetStream not ready (e.g. just restarted)
    nats.js.errors.NoStreamResponseError,
)

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def new_request_id() -> str:
    """32 random hex digits, like a uuid4's hex without building a UUID object."""
    return os.urandom(16).hex()


def outgoing_headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Headers that carry the current request id to the next service."""
    headers = {REQUEST_ID_HEADER: request_id_var.get() or new_request_id()}
    if extra:
        headers.update(extra)
    tracing.inject(headers)  # the current span's traceparent (nothing when tracing is off)
    return headers


def raise_for_error_headers(headers: dict[str, str] | None) -> None:
    """Turn a nats.micro error reply into a RagwayError."""
    if not headers or ERROR_CODE_HEADER not in headers:
        return
    code = headers[ERROR_CODE_HEADER]
    detail = headers.get(ERROR_HEADER, "") or "internal error"
    if code not in ERROR_CODES:
        code, detail = "internal", "internal error"
    raise RagwayError(code, detail)  # type: ignore[arg-type]


class Bus:
    """A NATS connection used for typed requests to other ragway services.

    Every call takes a declaration from `contracts.subjects`: the subject, the reply's
    type and the service named in errors all come from it.
    """

    def __init__(self, nc: Client) -> None:
        self.nc = nc

    async def call(self, endpoint: Endpoint[Req, Rep], request: Req, *, timeout: float) -> Rep:
        """Send `request`, return the owner's reply decoded as the endpoint's reply type."""
        data = await self._request(endpoint.subject, encode(request), timeout, endpoint.owner)
        return _decode_reply(data, endpoint)

    async def call_raw(
        self, endpoint: Endpoint[Any, Any], payload: bytes, *, timeout: float
    ) -> bytes:
        """`call` with the request already encoded (e.g. a body as its client sent it),
        and the reply's JSON bytes as the owner sent them, for relaying unchanged."""
        return await self._request(endpoint.subject, payload, timeout, endpoint.owner)

    async def call_into(
        self, endpoint: Endpoint[Req, Rep], request: Req, box: Mailbox, *, timeout: float
    ) -> Rep:
        """`call`, answered on `box.reply_subject`: the stream that follows arrives on
        the same mailbox, so asking needs no subscription or request future of its own."""
        self._check_connected()
        with tracing.span(endpoint.subject, tracing.CLIENT, {"ragway.service": endpoint.owner}):
            return await self._call_into(endpoint, request, box, timeout)

    async def _call_into(
        self, endpoint: Endpoint[Req, Rep], request: Req, box: Mailbox, timeout: float
    ) -> Rep:
        subject, payload, headers = endpoint.subject, encode(request), outgoing_headers()
        with _mapped_failures(endpoint.owner):
            async with asyncio.timeout(timeout):
                await self.nc.publish(subject, payload, reply=box.reply_subject, headers=headers)
                msg = await box.reply()
                if _no_responders(msg):  # the same one short retry as `_request`
                    await asyncio.sleep(NO_RESPONDERS_RETRY_SECONDS)
                    await self.nc.publish(
                        subject, payload, reply=box.reply_subject, headers=headers
                    )
                    msg = await box.reply()
            if _no_responders(msg):
                raise nats.errors.NoRespondersError
        raise_for_error_headers(msg.headers)
        return _decode_reply(msg.data, endpoint)

    async def ping(self, service: str, *, timeout: float) -> None:
        """One instance of `service` answers nats.micro's ping (or a RagwayError says why not)."""
        await self._request(ping_subject(service), b"", timeout, service)

    async def publish(self, event: Event[M], message: M, *, token: str = "") -> None:
        """Publish an event (a wildcard one on its subject for `token`); None is an empty body."""
        subject = event.subject_for(token) if token else event.subject
        payload = b"" if message is None else encode(message)
        await self.nc.publish(subject, payload, headers=outgoing_headers())

    async def _request(self, subject: str, payload: bytes, timeout: float, service: str) -> bytes:
        """Send bytes, return the reply's bytes; map NATS failures to clear errors."""
        self._check_connected()
        if len(payload) > self.nc.max_payload:
            raise RagwayError(
                "too_large",
                f"The request ({len(payload) / 2**20:.1f} MiB) is larger than the message "
                f"bus carries ({self.nc.max_payload / 2**20:.1f} MiB): send less at a time",
            )
        if tracing.enabled():
            with tracing.span(subject, tracing.CLIENT, {"ragway.service": service}):
                return await self._send(subject, payload, timeout, service)
        return await self._send(subject, payload, timeout, service)

    async def _send(self, subject: str, payload: bytes, timeout: float, service: str) -> bytes:
        sent_headers = outgoing_headers()
        with _mapped_failures(service):
            try:
                msg = await self.nc.request(subject, payload, timeout=timeout, headers=sent_headers)
            except nats.errors.NoRespondersError:
                # nats-server can briefly report no responders right after a service
                # (re)subscribed; one short retry separates that from a service that is down.
                await asyncio.sleep(NO_RESPONDERS_RETRY_SECONDS)
                msg = await self.nc.request(subject, payload, timeout=timeout, headers=sent_headers)
        raise_for_error_headers(msg.headers)
        return msg.data

    def _check_connected(self) -> None:
        if not self.nc.is_connected:
            # While reconnecting nats-py buffers a request and waits out the whole
            # timeout; a caller is better served by a clear answer at once.
            raise RagwayError("unavailable", BUS_UNAVAILABLE)


@contextlib.contextmanager
def _mapped_failures(service: str) -> Iterator[None]:
    """NATS failures of a request to `service` as the RagwayErrors callers handle."""
    try:
        yield
    except nats.errors.NoRespondersError:
        raise RagwayError("unavailable", f"The {service} service is unavailable") from None
    except (TimeoutError, nats.errors.TimeoutError):
        raise RagwayError("timeout", f"The {service} service did not answer in time") from None
    except BUS_FAILURES:
        raise RagwayError("unavailable", BUS_UNAVAILABLE) from None


def _decode_reply(data: bytes, endpoint: Endpoint[Any, Rep]) -> Rep:
    try:
        return decode(data, endpoint.reply)
    except msgspec.DecodeError:
        raise RagwayError(
            "internal", f"Malformed reply from the {endpoint.owner} service"
        ) from None


def _no_responders(msg: Msg) -> bool:
    headers = msg.headers
    return headers is not None and headers.get(STATUS_HEADER) == NO_RESPONDERS_STATUS
