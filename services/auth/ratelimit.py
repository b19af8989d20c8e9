"""Failed sign-ins counted per key (an email, a client address) in a sliding window.

In memory and per instance: with N auth instances an attacker gets up to N times the
limit. Good enough against online guessing today; a KV-backed counter would make it exact.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

MAX_TRACKED_KEYS = 100_000


class FailureLimiter:
    """Allows at most `max_failures` counted attempts per key within `window` seconds."""

    def __init__(
        self, max_failures: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max = max_failures
        self._window = window
        self._clock = clock
        self._attempts: dict[str, deque[float]] = {}

    def acquire(self, keys: Iterable[str]) -> float | None:
        """Count one attempt against every key, or none when any key is over the limit.

        Returns the attempt's stamp (to `release` it if it succeeds) or None when blocked.
        Counting before the password check means concurrent guesses cannot overshoot.
        """
        now = self._clock()
        keys = list(keys)
        if any(len(self._recent(key, now)) >= self._max for key in keys):
            return None
        if len(self._attempts) >= MAX_TRACKED_KEYS:
            self._sweep(now)
        for key in keys:
            self._attempts.setdefault(key, deque()).append(now)
        return now

    def release(self, key: str, stamp: float) -> None:
        """Uncount one attempt that turned out to be a success."""
        attempts = self._attempts.get(key)
        if attempts is not None and stamp in attempts:
            attempts.remove(stamp)
            if not attempts:
                del self._attempts[key]

    def reset(self, key: str) -> None:
        self._attempts.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        attempts = self._attempts.get(key)
        if attempts is None:
            return deque()
        while attempts and attempts[0] <= now - self._window:
            attempts.popleft()
        if not attempts:
            del self._attempts[key]
        return attempts

    def _sweep(self, now: float) -> None:
        for key in list(self._attempts):
            self._recent(key, now)
        if len(self._attempts) >= MAX_TRACKED_KEYS:
            # a flood of distinct keys: forgetting beats unbounded memory
            self._attempts.clear()
