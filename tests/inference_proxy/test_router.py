"""The router on its own: fewest in flight first, ejection with a doubling back-off, one
half-open probe at a time, and the fallbacks setting checked at start."""

from __future__ import annotations

import time

import pytest

from common.settings import load_settings
from inference_proxy.routing import Router
from inference_proxy.settings import Backend, Settings

A = Backend("openai", 0, "http://127.0.0.1:1/v1")
B = Backend("openai", 1, "http://127.0.0.1:2/v1")
C = Backend("openai", 2, "http://127.0.0.1:3/v1")


def router(**overrides: float) -> Router:
    settings = {"eject_after": 1, "eject_seconds": 10.0, "eject_max_seconds": 25.0}
    return Router(**{**settings, **overrides})  # type: ignore[arg-type]


def eject_now(routes: Router, backend: Backend) -> None:
    """Make `backend`'s ejection run out at once (its back-off length is kept)."""
    routes._of(backend).ejected_until = time.monotonic() - 0.001


def test_the_backend_with_fewest_in_flight_goes_first_and_ties_alternate() -> None:
    routes = router()
    first = routes.take(routes.order([A, B, C])[0])
    second = routes.take(routes.order([A, B, C])[0])
    assert (first.backend, second.backend) == (A, B)
    assert routes.order([A, B, C])[0] == C  # A and B each have one in flight
    first.release()
    assert routes.order([A, B, C]) == [C, A, B]  # A is free again; C was picked least
    second.release()
    picks = []
    for _ in range(4):  # one at a time: the least recently picked goes next
        lease = routes.take(routes.order([A, B])[0])
        picks.append(lease.backend)
        lease.release()
    assert picks == [A, B, A, B]


def test_a_failure_ejects_and_a_failed_probe_doubles_the_back_off_up_to_the_max() -> None:
    routes = router()
    lease = routes.take(A)
    lease.failed("HTTP 503")
    lease.release()
    assert not routes.in_service(A)
    assert routes.order([A, B]) == [B]
    assert routes.order([A, B], ejected_too=True) == [B, A]
    backoffs = []
    for _ in range(3):
        eject_now(routes, A)
        probe = routes.take(routes.order([A, B])[0])
        assert probe.backend == A and probe.probe  # the ejection ran out: A is probed first
        probe.failed("unreachable")
        probe.release()
        backoffs.append(routes._of(A).backoff)
    assert backoffs == [20.0, 25.0, 25.0]
    eject_now(routes, A)
    probe = routes.take(A)
    probe.succeeded()
    probe.release()
    assert routes.in_service(A) and routes._of(A).backoff == 0.0


def test_one_probe_at_a_time_and_a_cancelled_probe_lets_the_next_one_probe() -> None:
    routes = router()
    routes.failed(A, "model list: BackendConnectError")  # a failed health check ejects too
    eject_now(routes, A)
    probe = routes.take(routes.order([A, B])[0])
    assert probe.backend == A
    assert routes.order([A, B]) == [B]  # while it is out, nobody else is sent there
    probe.release()  # cancelled before it said how A did
    assert routes.order([A, B])[0] == A


def test_failures_in_a_row_below_the_threshold_do_not_eject() -> None:
    routes = router(eject_after=3)
    for _ in range(2):
        routes.failed(A, "HTTP 500")
    routes.succeeded(A)
    for _ in range(2):
        routes.failed(A, "HTTP 500")
    assert routes.in_service(A)
    routes.failed(A, "HTTP 500")
    assert not routes.in_service(A)


def test_model_fallbacks_are_read_as_json_and_checked_at_start() -> None:
    settings = load_settings(
        Settings, {"RAGWAY_MODEL_FALLBACKS": '{"big": ["small", "tiny"], "x": []}'}
    )
    assert settings.model_fallbacks == {"big": ["small", "tiny"], "x": []}
    for bad, says in (
        ('{"big": ["big"]}', "cannot fall back to itself"),
        ('{"big": "small"}', "Expected `array`"),
        ('{"big": ["a", "a"]}', "twice"),
        ("big=small", "RAGWAY_MODEL_FALLBACKS is not JSON"),
    ):
        with pytest.raises(SystemExit, match=says):
            load_settings(Settings, {"RAGWAY_MODEL_FALLBACKS": bad})
