"""structlog configured once per process: JSON lines off a terminal, pretty on one.

Services write one canonical line per request at the default `info` level, so a JSON
line sits on the hot path: it is rendered to bytes with msgspec and written by a bytes
logger, and the timestamp reuses the formatted second (structlog's JSONRenderer with
json.dumps and the ISO TimeStamper cost ~2x as much per line).
"""

from __future__ import annotations

import json as stdlib_json
import logging
import sys
import threading
import time
from typing import Any

import msgspec
import structlog


def _as_text(value: Any) -> str:
    """What a value JSON cannot hold becomes its repr, as with structlog's JSONRenderer."""
    return repr(value)


_encoder = msgspec.json.Encoder(enc_hook=_as_text)


def render_json(_logger: Any, _name: str, event_dict: Any) -> bytes:
    """The event as one JSON object (bytes), keys in the event dict's order."""
    try:
        return _encoder.encode(event_dict)
    except Exception:  # e.g. an int beyond 64 bits: never let a log line raise
        return stdlib_json.dumps(event_dict, default=_as_text).encode()


def _render_json_text(logger: Any, name: str, event_dict: Any) -> str:
    return render_json(logger, name, event_dict).decode()


class UtcTimestamp:
    """Adds `timestamp` as ISO 8601 UTC with microseconds and a `Z`, formatting each
    second once."""

    __slots__ = ("_second",)

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")

    def __call__(self, _logger: Any, _name: str, event_dict: Any) -> Any:
        whole, micros = divmod(round(time.time() * 1_000_000), 1_000_000)
        second, prefix = self._second
        if whole != second:  # a tuple swap: threads never see a half-updated cache
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            self._second = (whole, prefix)
        event_dict["timestamp"] = f"{prefix}.{micros:06d}Z"
        return event_dict


class _LineWriter:
    """One write and one flush per line to a binary stream (structlog's BytesLogger,
    without the method aliases)."""

    __slots__ = ("_file", "_lock")

    def __init__(self, file: Any) -> None:
        self._file = file
        self._lock = threading.Lock()

    def msg(self, message: bytes) -> None:
        with self._lock:
            self._file.write(message + b"\n")
            self._file.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def configure_logging(level: str = "info", json: bool | None = None) -> None:
    """Set up structlog and route stdlib logging through it."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        UtcTimestamp(),
    ]
    binary = getattr(sys.stderr, "buffer", None)
    renderer: Any
    logger_factory: Any
    if use_json and binary is not None:
        renderer = render_json
        writer = _LineWriter(binary)
        logger_factory = lambda *_args: writer  # noqa: E731 - one writer for every logger
    else:
        renderer = (
            _render_json_text
            if use_json
            else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        )
        logger_factory = structlog.PrintLoggerFactory(file=sys.stderr)
    log_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(log_level),
        logger_factory=logger_factory,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                *shared,
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _render_json_text if use_json else renderer,
            ],
            foreign_pre_chain=[],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(log_level, logging.WARNING))
