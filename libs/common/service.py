"""A nats.micro service whose endpoints take and return msgspec values.

Each request runs in its own task (nats-py runs a subscription's callbacks one at a
time, so a slow handler would otherwise stall the endpoint), with the caller's request
id bound for logging. Domain errors go back as nats.micro error headers; anything else
is logged here and answered with a generic `internal` error (no repr leaks).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.micro import ServiceConfig, add_service
from nats.micro.service import EndpointConfig, Service

from common.bus import (
    BUS_FAILURES,
    BUS_UNAVAILABLE,
    ERROR_CODE_HEADER,
    ERROR_HEADER,
    REQUEST_ID_HEADER,
    request_id_var,
)
from common.codec import encode, json_decoder
from common.errors import RagwayError
from common.tasks import BackgroundTasks
from contracts.endpoint import Endpoint, Rep, Req

log = structlog.get_logger()


class ServiceHost:
    """Owns one nats.micro service and the tasks of its in-flight requests."""

    def __init__(
        self, nc: Client, name: str, version: str = "0.1.0", description: str = ""
    ) -> None:
        self.nc = nc
        self.name = name
        self._version = version
        self._description = description
        self._service: Service | None = None
        self._tasks = BackgroundTasks()

    async def start(self) -> None:
        self._service = await add_service(
            self.nc,
            ServiceConfig(
                name=self.name,
                version=self._version,
                description=self._description or None,
                queue_group=self.name,
            ),
        )

    async def serve(
        self, endpoint: Endpoint[Req, Rep], handler: Callable[[Req], Awaitable[Rep | msgspec.Raw]]
    ) -> None:
        """Answer `endpoint`: decode each request as its request type, reply with the
        handler's value (or the bytes of an already encoded one, as `msgspec.Raw`)."""
        assert self._service is not None, "start() first"
        if endpoint.owner != self.name:
            raise ValueError(f"{endpoint.subject} belongs to {endpoint.owner}, not {self.name}")
        subject = endpoint.subject
        decoder = json_decoder(endpoint.request)
        endpoint_name = subject.replace(".", "-")

        async def on_message(request: Any) -> None:
            msg: Msg = request._msg
            self._tasks.spawn(self._handle(msg, subject, handler, decoder))

        await self._service.add_endpoint(
            EndpointConfig(name=endpoint_name, subject=subject, handler=on_message)
        )

    async def _handle(
        self,
        msg: Msg,
        subject: str,
        handler: Callable[[Any], Awaitable[Any]],
        decoder: msgspec.json.Decoder[Any],
    ) -> None:
        headers = msg.headers or {}
        request_id = headers.get(REQUEST_ID_HEADER, "")
        request_id_var.set(request_id)
        structlog.contextvars.bind_contextvars(
            request_id=request_id, service=self.name, subject=subject
        )
        started = time.perf_counter()
        outcome = "ok"
        try:
            try:
                request = decoder.decode(msg.data)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise RagwayError("invalid", f"Invalid request: {exc}") from None
            reply = await handler(request)
            if msg.reply:
                # not msg.respond(): that echoes the request's headers, which no caller
                # reads and which cost an encode here and a parse at the caller
                await self.nc.publish(msg.reply, _to_bytes(reply))
        except RagwayError as exc:
            outcome = exc.code
            await self._respond_error(msg, exc.code, exc.detail)
        except nats.errors.TimeoutError:  # a KV / object store call that got no answer
            outcome = "timeout"
            await self._respond_error(msg, "timeout", "The message bus did not answer in time")
        except BUS_FAILURES:  # e.g. JetStream still starting after a nats-server restart
            outcome = "unavailable"
            await self._respond_error(msg, "unavailable", BUS_UNAVAILABLE)
        except Exception:
            outcome = "internal"
            log.exception("handler_failed")
            await self._respond_error(msg, "internal", "Internal error")
        finally:
            # the service's canonical line for this request, carrying the caller's request id
            log.info(
                "nats_request",
                outcome=outcome,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )

    async def _respond_error(self, msg: Msg, code: str, detail: str) -> None:
        if not msg.reply:
            return
        try:
            await self.nc.publish(
                msg.reply, b"", headers={ERROR_CODE_HEADER: code, ERROR_HEADER: detail[:1000]}
            )
        except Exception:
            log.warning("error_reply_failed", code=code)

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop taking requests, then let in-flight ones finish (bounded)."""
        if self._service is not None:
            await self._service.stop()
            self._service = None
        await self._tasks.drain(grace_seconds)

    async def __aenter__(self) -> ServiceHost:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def _to_bytes(reply: Any) -> bytes:
    if reply is None:
        return b""
    if isinstance(reply, msgspec.Raw):
        return bytes(reply)
    return encode(reply)
