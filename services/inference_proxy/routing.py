"""Which backend a request goes to, and which are left out for a while.

Balancing: among the backends that serve a model, the one with the fewest requests in
flight *from this proxy instance* is tried first (a tie goes to the one picked least
recently, so one-at-a-time traffic alternates). Instances do not share their counts: with
several proxies each balances its own share.

Ejection: a backend that fails `eject_after` requests in a row (no connection, a 5xx, a
429, no answer in time, a stream that broke), or fails a model-list health check, is left
out for `eject_seconds`. When that time is up it is tried again with one real request
(half-open: the others keep skipping it meanwhile); a success puts it back, a failure
ejects it again for twice as long, up to `eject_max_seconds`. The request that probed
loses nothing: a failure before the first token moves on to the next candidate.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from inference_proxy.settings import Backend, Settings

log = structlog.get_logger()


@dataclass(slots=True)
class _Health:
    in_flight: int = 0
    failures: int = 0  # in a row
    ejected_until: float = 0.0  # time.monotonic(); 0.0: in service
    backoff: float = 0.0  # how long the current ejection lasts
    probing: bool = False  # the half-open request is out
    picked: int = 0  # when it was last picked (a counter): ties go to the least recent


class Lease:
    """One request on one backend: counts as in flight until `release`; `succeeded` or
    `failed` tell the router how the backend did (the first word counts)."""

    __slots__ = ("_reported", "_router", "backend", "probe", "released")

    def __init__(self, router: Router, backend: Backend, probe: bool) -> None:
        self._router = router
        self.backend = backend
        self.probe = probe
        self._reported = False
        self.released = False

    def succeeded(self) -> None:
        if not self._reported:
            self._reported = True
            self._router.succeeded(self.backend)

    def failed(self, reason: str) -> None:
        if not self._reported:
            self._reported = True
            self._router.failed(self.backend, reason)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._router.released(self.backend, self.probe and not self._reported)


class Router:
    """Health and load of every backend of one proxy instance."""

    def __init__(self, *, eject_after: int, eject_seconds: float, eject_max_seconds: float):
        self._eject_after = eject_after
        self._eject_seconds = eject_seconds
        self._eject_max = eject_max_seconds
        self._health: dict[tuple[str, int], _Health] = {}
        self._picks = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Router:
        return cls(
            eject_after=settings.backend_eject_after_failures,
            eject_seconds=settings.backend_eject_seconds,
            eject_max_seconds=settings.backend_eject_max_seconds,
        )

    def _of(self, backend: Backend) -> _Health:
        health = self._health.get(backend.key)
        if health is None:
            health = self._health[backend.key] = _Health()
        return health

    def order(self, backends: Sequence[Backend], *, ejected_too: bool = False) -> list[Backend]:
        """The backends to try, best first: one whose ejection ran out (its probe), then
        those in service by fewest in flight. `ejected_too`: the ejected ones after them,
        soonest back first (a last resort when nothing else is left)."""
        now = time.monotonic()
        probes: list[Backend] = []
        ready: list[tuple[int, int, Backend]] = []
        out: list[tuple[float, Backend]] = []
        for backend in backends:
            health = self._of(backend)
            if not health.ejected_until:
                ready.append((health.in_flight, health.picked, backend))
            elif now >= health.ejected_until and not health.probing:
                probes.append(backend)
            else:
                out.append((health.ejected_until, backend))
        ready.sort(key=lambda entry: (entry[0], entry[1]))
        order = probes[:1] + [backend for _, _, backend in ready] + probes[1:]
        if ejected_too:
            order += [backend for _, backend in sorted(out, key=lambda entry: entry[0])]
        return order

    def pick(self, backends: Sequence[Backend]) -> Backend:
        """The one backend to use where a request is not passed on (embeddings, the
        Ollama pass-through): the first in `order`, an ejected one when none is left."""
        if len(backends) == 1:
            return backends[0]
        return self.order(backends, ejected_too=True)[0]

    def in_service(self, backend: Backend) -> bool:
        return not self._of(backend).ejected_until

    def in_flight(self, backend: Backend) -> int:
        return self._of(backend).in_flight

    def take(self, backend: Backend) -> Lease:
        health = self._of(backend)
        self._picks += 1
        health.picked = self._picks
        health.in_flight += 1
        probe = bool(health.ejected_until) and time.monotonic() >= health.ejected_until
        if probe:
            health.probing = True
        return Lease(self, backend, probe)

    def released(self, backend: Backend, unfinished_probe: bool) -> None:
        health = self._of(backend)
        health.in_flight -= 1
        if unfinished_probe:
            health.probing = False  # cancelled before it said anything: the next may probe

    def succeeded(self, backend: Backend) -> None:
        health = self._of(backend)
        health.failures = 0
        health.probing = False
        if health.ejected_until:
            health.ejected_until = health.backoff = 0.0
            log.info("backend_restored", backend=backend.label, host=backend.host)

    def failed(self, backend: Backend, reason: str) -> None:
        """A request (or a health check) failed on `backend` because of `reason`."""
        health = self._of(backend)
        health.failures += 1
        if health.ejected_until:
            if not health.probing:
                return  # a request that started before the ejection: nothing new
            health.probing = False
            health.backoff = min(health.backoff * 2, self._eject_max)
        elif health.failures >= self._eject_after:
            health.backoff = self._eject_seconds
        else:
            return
        health.ejected_until = time.monotonic() + health.backoff
        log.warning(
            "backend_ejected",
            backend=backend.label,
            host=backend.host,
            reason=reason,
            failures=health.failures,
            seconds=health.backoff,
        )
