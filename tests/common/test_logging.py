"""The JSON log lines services write: one object per line, the same keys as structlog's
JSONRenderer gave, whatever the values."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import structlog

from common.logging import UtcTimestamp, configure_logging

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.TextIOWrapper]:
    """A binary-backed stderr that configure_logging writes to, reset afterwards."""
    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging(level="info", json=True)
    yield stream
    structlog.contextvars.clear_contextvars()
    monkeypatch.undo()
    configure_logging(level="warning", json=True)


def lines_of(stream: io.TextIOWrapper) -> list[dict[str, object]]:
    stream.flush()
    raw = stream.buffer.getvalue().decode()  # type: ignore[attr-defined]
    return [json.loads(line) for line in raw.splitlines()]


def test_a_line_carries_the_event_its_fields_the_context_level_and_timestamp(
    stderr: io.TextIOWrapper,
) -> None:
    structlog.contextvars.bind_contextvars(request_id="r-1", route="/api/models")
    before = datetime.now(UTC)
    structlog.get_logger().info("http_request", status=200, duration_ms=1.25, user_id=None)
    (line,) = lines_of(stderr)
    assert line == {
        "event": "http_request",
        "status": 200,
        "duration_ms": 1.25,
        "user_id": None,
        "request_id": "r-1",
        "route": "/api/models",
        "level": "info",
        "timestamp": line["timestamp"],
    }
    stamp = str(line["timestamp"])
    assert ISO_UTC.match(stamp), stamp
    logged = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs((logged - before).total_seconds()) < 5


def test_values_json_cannot_hold_are_written_as_their_repr(stderr: io.TextIOWrapper) -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque>"

    structlog.get_logger().warning("odd_values", value=Opaque(), huge=2**80)
    (line,) = lines_of(stderr)
    assert line["value"] == "<opaque>"
    assert line["huge"] == 2**80
    assert line["level"] == "warning"


def test_exceptions_are_rendered_as_a_traceback_string(stderr: io.TextIOWrapper) -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        structlog.get_logger().exception("handler_failed")
    (line,) = lines_of(stderr)
    assert line["level"] == "error"
    assert "ValueError: broken" in str(line["exception"])


def test_lines_below_the_level_are_not_written(stderr: io.TextIOWrapper) -> None:
    structlog.get_logger().debug("noise")
    structlog.get_logger().info("kept")
    assert [line["event"] for line in lines_of(stderr)] == ["kept"]


def test_stdlib_records_become_json_lines_without_formatter_internals(
    stderr: io.TextIOWrapper,
) -> None:
    logging.getLogger("nats").warning("reconnecting to %s", "nats://127.0.0.1")
    (line,) = lines_of(stderr)
    assert line["event"] == "reconnecting to nats://127.0.0.1"
    assert line["level"] == "warning"
    assert "_record" not in line and "_from_structlog" not in line


def test_the_timestamp_follows_the_clock_across_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    stamp = UtcTimestamp()
    for now in (1_700_000_000.25, 1_700_000_000.5, 1_700_000_001.000001):
        monkeypatch.setattr(time, "time", lambda now=now: now)
        event = stamp(None, "info", {})
        expected = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert event["timestamp"] == expected
