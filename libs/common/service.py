"""A nats.micro service whose endpoints take and return msgspec values.

nats-py runs one subscription's callbacks one at a time, so a handler awaited in the
callback would stall its endpoint; a handler spawned from nats.micro's callback makes
`$SRV.STATS` lie (the request "ends" when the task starts). So the host subscribes each
endpoint itself (in the service's queue group): the callback counts the request and
starts a task, and the task times the handler, counts its errors and replies. nats.micro
still answers `$SRV.PING/INFO/STATS`, from these numbers.

At most `max_in_flight` requests of a service run at once; one over it is answered at
once with an `unavailable` error (the gateway's 503), not queued without limit. The
caller's request id is bound for logging. Domain errors go back as nats.micro error
headers; anything else is logged here and answered with a generic `internal` error.
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
from nats.aio.subscription import Subscription
from nats.micro import ServiceConfig
from nats.micro.service import EndpointInfo, EndpointStats, Service, ServiceInfo, ServiceStats

from common import tracing
from common.bus import (
    BUS_FAILURES,
    BUS_UNAVAILABLE,
    ERROR_CODE_HEADER,
    ERROR_HEADER,
    REQUEST_ID_HEADER,
    request_id_var,
)
from common.codec import encode, json_decoder
from common.errors import ErrorCode, RagwayError
from common.metrics import MetricsReply, MetricsSource, nats_families
from common.tasks import BackgroundTasks
from contracts.endpoint import Endpoint, Rep, Req
from contracts.subjects import metrics_subject

log = structlog.get_logger()

DEFAULT_MAX_IN_FLIGHT = 512
BUSY = "busy"


class _Served:
    """One endpoint the host answers: its subscription and what `$SRV.STATS` reports."""

    __slots__ = (
        "decoder",
        "handler",
        "last_error",
        "name",
        "num_errors",
        "num_requests",
        "processing_ns",
        "subject",
        "subscription",
    )

    def __init__(
        self, subject: str, decoder: msgspec.json.Decoder[Any], handler: Callable[[Any], Any]
    ) -> None:
        self.subject = subject
        self.name = subject.replace(".", "-")
        self.decoder = decoder
        self.handler = handler
        self.num_requests = 0
        self.num_errors = 0
        self.processing_ns = 0
        self.last_error = ""
        self.subscription: Subscription | None = None

    def failed(self, code: str, detail: str) -> None:
        self.num_errors += 1
        self.last_error = f"{code}: {detail}"


class _MicroService(Service):
    """nats.micro's identity and PING/INFO/STATS, over the endpoints the host runs."""

    def __init__(self, nc: Client, config: ServiceConfig, served: list[_Served]) -> None:
        super().__init__(nc, config)
        self._served = served

    def stats(self) -> ServiceStats:
        stats = super().stats()
        stats.endpoints = [
            EndpointStats(
                name=served.name,
                subject=served.subject,
                queue_group=self._queue_group or "",
                num_requests=served.num_requests,
                num_errors=served.num_errors,
                last_error=served.last_error,
                processing_time=served.processing_ns,
                average_processing_time=served.processing_ns // max(served.num_requests, 1),
            )
            for served in self._served
        ]
        return stats

    def info(self) -> ServiceInfo:
        info = super().info()
        info.endpoints = [
            EndpointInfo(
                name=served.name, subject=served.subject, queue_group=self._queue_group or ""
            )
            for served in self._served
        ]
        return info


class ServiceHost:
    """Owns one nats.micro service, its endpoints' subscriptions and their in-flight tasks."""

    def __init__(
        self,
        nc: Client,
        name: str,
        version: str = "0.1.0",
        description: str = "",
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.nc = nc
        self.name = name
        self._version = version
        self._description = description
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._served: list[_Served] = []
        self._service: _MicroService | None = None
        self._tasks = BackgroundTasks()
        self._metrics: list[MetricsSource] = [lambda: nats_families(nc.stats, self._in_flight)]
        self._metrics_sub: Subscription | None = None

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def start(self) -> None:
        config = ServiceConfig(
            name=self.name,
            version=self._version,
            description=self._description or None,
            queue_group=self.name,
        )
        self._service = _MicroService(self.nc, config, self._served)
        await self._service.start()
        instance = self._service.info().id

        async def answer_metrics(msg: Msg) -> None:
            await self._answer_metrics(msg, instance)

        # every instance answers (no queue group): the gateway's /metrics gathers them all
        self._metrics_sub = await self.nc.subscribe(metrics_subject(self.name), cb=answer_metrics)

    def add_metrics(self, source: MetricsSource) -> None:
        """`source()`'s families go out with this instance's metrics (see common.metrics)."""
        self._metrics.append(source)

    async def _answer_metrics(self, msg: Msg, instance: str) -> None:
        if not msg.reply:
            return
        families = [family for source in self._metrics for family in source()]
        reply = MetricsReply(service=self.name, instance=instance, families=families)
        await self.nc.publish(msg.reply, encode(reply))

    async def serve(
        self, endpoint: Endpoint[Req, Rep], handler: Callable[[Req], Awaitable[Rep | msgspec.Raw]]
    ) -> None:
        """Answer `endpoint`: decode each request as its request type, reply with the
        handler's value (or the bytes of an already encoded one, as `msgspec.Raw`)."""
        assert self._service is not None, "start() first"
        if endpoint.owner != self.name:
            raise ValueError(f"{endpoint.subject} belongs to {endpoint.owner}, not {self.name}")
        served = _Served(endpoint.subject, json_decoder(endpoint.request), handler)

        async def on_message(msg: Msg) -> None:
            # runs in the subscription's one reader task: count, then hand off at once
            started = time.perf_counter_ns()
            served.num_requests += 1
            if self._in_flight >= self._max_in_flight:
                await self._refuse_busy(msg, served, started)
                return
            self._in_flight += 1
            self._tasks.spawn(self._handle(msg, served, started))

        served.subscription = await self.nc.subscribe(
            endpoint.subject, queue=self.name, cb=on_message
        )
        self._served.append(served)

    async def _refuse_busy(self, msg: Msg, served: _Served, started: int) -> None:
        detail = f"The {self.name} service is busy, try again shortly"
        served.failed(BUSY, detail)
        await self._respond_error(msg, "unavailable", detail)
        served.processing_ns += time.perf_counter_ns() - started
        log.warning("nats_request_refused", service=self.name, subject=served.subject, outcome=BUSY)

    async def _handle(self, msg: Msg, served: _Served, started: int) -> None:
        headers = msg.headers or {}
        request_id = headers.get(REQUEST_ID_HEADER, "")
        request_id_var.set(request_id)
        structlog.contextvars.bind_contextvars(
            request_id=request_id, service=self.name, subject=served.subject
        )
        outcome = "ok"
        try:
            if tracing.enabled():  # a server span continuing the caller's trace
                attributes = {"ragway.service": self.name, "messaging.destination": served.subject}
                with tracing.served(served.subject, headers, attributes) as current:
                    error = await self._answer(msg, served)
                    if error is not None:
                        tracing.set_error(current, error[0])
            else:
                error = await self._answer(msg, served)
            if error is not None:
                code, detail = error
                outcome = code
                served.failed(code, detail)
                await self._respond_error(msg, code, detail)
        finally:
            self._in_flight -= 1
            elapsed = time.perf_counter_ns() - started
            served.processing_ns += elapsed
            # the service's canonical line for this request, carrying the caller's request id
            log.info("nats_request", outcome=outcome, duration_ms=round(elapsed / 1e6, 2))

    async def _answer(self, msg: Msg, served: _Served) -> tuple[ErrorCode, str] | None:
        """Decode, run the handler, reply; the error to answer with instead, if any."""
        try:
            try:
                request = served.decoder.decode(msg.data)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise RagwayError("invalid", f"Invalid request: {exc}") from None
            reply = await served.handler(request)
            if msg.reply:
                payload = _to_bytes(reply)
                if len(payload) > self.nc.max_payload:
                    raise too_large_for_bus("reply", len(payload), self.nc.max_payload)
                # not msg.respond(): that echoes the request's headers, which no caller
                # reads and which cost an encode here and a parse at the caller
                await self.nc.publish(msg.reply, payload)
        except RagwayError as exc:
            return exc.code, exc.detail
        except nats.errors.TimeoutError:  # a KV / object store call that got no answer
            return "timeout", "The message bus did not answer in time"
        except BUS_FAILURES:  # e.g. JetStream still starting after a nats-server restart
            return "unavailable", BUS_UNAVAILABLE
        except Exception:
            log.exception("handler_failed")
            return "internal", "Internal error"
        return None

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
        if self._metrics_sub is not None:
            await self._metrics_sub.unsubscribe()
            self._metrics_sub = None
        for served in self._served:
            if served.subscription is not None:
                await served.subscription.unsubscribe()
                served.subscription = None
        if self._service is not None:
            await self._service.stop()
            self._service = None
        await self._tasks.drain(grace_seconds)

    async def __aenter__(self) -> ServiceHost:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def too_large_for_bus(what: str, size: int, limit: int) -> RagwayError:
    """A message over NATS' `max_payload`: said plainly instead of failing as internal."""
    return RagwayError(
        "too_large",
        f"The {what} ({size / 2**20:.1f} MiB) is larger than the message bus carries "
        f"({limit / 2**20:.1f} MiB): ask for less at a time (a page: `?page=`)",
    )


def _to_bytes(reply: Any) -> bytes:
    if reply is None:
        return b""
    if isinstance(reply, msgspec.Raw):
        return bytes(reply)
    return encode(reply)
