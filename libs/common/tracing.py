"""OpenTelemetry spans across the services, off unless a tracer provider is installed.

With `RAGWAY_OTLP_ENDPOINT` set, `configure_tracing` installs an SDK provider that sends
spans over OTLP/HTTP; tests install one with an in-memory exporter. Without one, every
helper here returns at its first line (`span()` hands back one shared null context) and
no OpenTelemetry object is made: tracing off costs a global read per request.

The context crosses NATS as a W3C `traceparent` header, added by `common.bus` to the
same headers that carry the request id and read by the service host (and the ingestion
worker) on the other side; so one trace runs gateway -> service -> backend or store.
The provider is this module's, not OpenTelemetry's global one: a process (or a test) can
install and remove it, and libraries that trace through the global API stay unaffected.
"""

from __future__ import annotations

import atexit
import contextlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

TRACEPARENT = "traceparent"
SERVER, CLIENT, CONSUMER, INTERNAL = (
    SpanKind.SERVER,
    SpanKind.CLIENT,
    SpanKind.CONSUMER,
    SpanKind.INTERNAL,
)

_tracer: trace.Tracer | None = None
_propagator = TraceContextTextMapPropagator()
_NULL = contextlib.nullcontext()


def install(provider: trace.TracerProvider | None) -> None:
    """Trace through `provider` from now on (None: stop tracing)."""
    global _tracer
    _tracer = None if provider is None else provider.get_tracer("ragway")


def enabled() -> bool:
    return _tracer is not None


def configure_tracing(endpoint: str, service: str) -> TracerProvider | None:
    """A process's tracing: spans to the OTLP/HTTP collector at `endpoint` (e.g.
    `http://otel-collector:4318/v1/traces`), flushed at exit; nothing when it is empty."""
    if not endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    install(provider)
    atexit.register(provider.shutdown)
    return provider


def span(
    name: str,
    kind: SpanKind = INTERNAL,
    attributes: Mapping[str, str | int | float | bool] | None = None,
    parent: otel_context.Context | None = None,
) -> contextlib.AbstractContextManager[Any]:
    """A span as the current one for the block (a null context when tracing is off).
    An exception leaving the block is recorded and marks the span an error."""
    tracer = _tracer
    if tracer is None:
        return _NULL
    return tracer.start_as_current_span(name, context=parent, kind=kind, attributes=attributes)


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's `traceparent` to outgoing headers (no span: nothing)."""
    if _tracer is None:
        return
    if trace.get_current_span().get_span_context().is_valid:
        _propagator.inject(headers)


def extract(headers: Mapping[str, str] | None) -> otel_context.Context | None:
    """The caller's context from incoming headers; None when tracing is off or none came."""
    if _tracer is None or not headers or TRACEPARENT not in headers:
        return None
    return _propagator.extract(headers)


@contextlib.contextmanager
def served(
    name: str,
    headers: Mapping[str, str] | None,
    attributes: Mapping[str, str | int | float | bool],
    kind: SpanKind = SERVER,
) -> Iterator[Any]:
    """A server (or consumer) span continuing the trace the caller's headers carry."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span(
        name, context=extract(headers), kind=kind, attributes=attributes
    ) as current:
        yield current


def set_error(current: Any, code: str) -> None:
    """Mark a span (from `span`/`served`; None when off) failed with a ragway error code."""
    if current is not None:
        current.set_status(Status(StatusCode.ERROR, code))
        current.set_attribute("ragway.error", code)
