"""Typed request/reply over NATS: msgspec in, msgspec out, errors as RagwayError.

The request id of the current context travels in a header so every service logs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
from collections.abc import Iterator
from typing import Any, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from common.codec import decode, encode
from common.errors import ERROR_CODES, RagwayError
from common.inbox import Mailbox

T = TypeVar("T")

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
    """A NATS connection used for typed requests to other ragway services."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc

    async def request_raw(
        self,
        subject: str,
        payload: bytes,
        *,
        timeout: float,
        capability: str,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        """Send bytes, return the reply's bytes; map NATS failures to clear errors."""
        self._check_connected()
        sent_headers = outgoing_headers(headers)
        with _mapped_failures(capability):
            try:
                msg = await self.nc.request(subject, payload, timeout=timeout, headers=sent_headers)
            except nats.errors.NoRespondersError:
                # nats-server can briefly report no responders right after a service
                # (re)subscribed; one short retry separates that from a service that is down.
                await asyncio.sleep(NO_RESPONDERS_RETRY_SECONDS)
                msg = await self.nc.request(subject, payload, timeout=timeout, headers=sent_headers)
        raise_for_error_headers(msg.headers)
        return msg.data

    async def request(
        self,
        subject: str,
        message: Any,
        reply_type: type[T],
        *,
        timeout: float,
        capability: str,
        headers: dict[str, str] | None = None,
    ) -> T:
        """Send a msgspec value, decode the reply as `reply_type`."""
        data = await self.request_raw(
            subject, encode(message), timeout=timeout, capability=capability, headers=headers
        )
        return _decode_reply(data, reply_type, capability)

    async def request_into(
        self,
        subject: str,
        message: Any,
        reply_type: type[T],
        box: Mailbox,
        *,
        timeout: float,
        capability: str,
    ) -> T:
        """`request`, answered on `box.reply_subject`: the stream that follows arrives on
        the same mailbox, so asking needs no subscription or request future of its own."""
        self._check_connected()
        payload = encode(message)
        headers = outgoing_headers()
        with _mapped_failures(capability):
            async with asyncio.timeout(timeout):
                await self.nc.publish(subject, payload, reply=box.reply_subject, headers=headers)
                msg = await box.reply()
                if _no_responders(msg):  # the same one short retry as `request_raw`
                    await asyncio.sleep(NO_RESPONDERS_RETRY_SECONDS)
                    await self.nc.publish(
                        subject, payload, reply=box.reply_subject, headers=headers
                    )
                    msg = await box.reply()
            if _no_responders(msg):
                raise nats.errors.NoRespondersError
        raise_for_error_headers(msg.headers)
        return _decode_reply(msg.data, reply_type, capability)

    def _check_connected(self) -> None:
        if not self.nc.is_connected:
            # While reconnecting nats-py buffers a request and waits out the whole
            # timeout; a caller is better served by a clear answer at once.
            raise RagwayError("unavailable", BUS_UNAVAILABLE)

    async def publish(self, subject: str, message: Any) -> None:
        await self.nc.publish(subject, encode(message), headers=outgoing_headers())


@contextlib.contextmanager
def _mapped_failures(capability: str) -> Iterator[None]:
    """NATS failures of a request to `capability` as the RagwayErrors callers handle."""
    try:
        yield
    except nats.errors.NoRespondersError:
        raise RagwayError("unavailable", f"The {capability} service is unavailable") from None
    except (TimeoutError, nats.errors.TimeoutError):
        raise RagwayError("timeout", f"The {capability} service did not answer in time") from None
    except BUS_FAILURES:
        raise RagwayError("unavailable", BUS_UNAVAILABLE) from None


def _decode_reply(data: bytes, reply_type: type[T], capability: str) -> T:
    try:
        return decode(data, reply_type)
    except msgspec.DecodeError:
        raise RagwayError("internal", f"Malformed reply from the {capability} service") from None


def _no_responders(msg: Msg) -> bool:
    headers = msg.headers
    return headers is not None and headers.get(STATUS_HEADER) == NO_RESPONDERS_STATUS
