"""Attempts counted per key (an email and address pair, an address) in a sliding window.

The counts live in a KV bucket, so every auth instance shares them: with N instances an
attacker still gets the limit, not N times it. Each key holds the stamps of its recent
attempts (JSON), changed by compare-and-set, so concurrent attempts on any instances
cannot overshoot; the bucket drops a key a window after its last write. Keys are hashes:
an email or address never appears in the bucket.

Each key has a `Limit`: a number of attempts allowed in the window, then either a wall
(no more until the oldest leaves the window) or a back-off (one more attempt after a
delay that doubles with every attempt beyond the allowance, capped at the window).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from catalog.buckets import Bucket
from common.errors import RagwayError

_decode_stamps = msgspec.json.Decoder(list[float]).decode
_encode = msgspec.json.Encoder().encode
# Stamps kept per key beyond the allowance: 2**32 times any back-off exceeds any window.
_EXTRA_STAMPS = 32


def _busy() -> RagwayError:
    return RagwayError("unavailable", "Attempts are changing too fast; try again")


@dataclass(frozen=True, slots=True)
class Limit:
    """`allowed` attempts per window, then a back-off from `backoff_seconds` (0: a wall)."""

    allowed: int
    backoff_seconds: float = 0.0


class TooManyAttempts(Exception):
    """Refused without counting; `retry_after` says when one more attempt may pass."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after:.1f} s")
        self.retry_after = retry_after

    @property
    def seconds(self) -> int:
        return max(1, math.ceil(self.retry_after))


def counter_key(key: str) -> str:
    """The bucket key of a counter: a hash (KV keys allow few characters; no emails kept)."""
    return hashlib.sha256(key.encode()).hexdigest()


def wait_before_next(stamps: Sequence[float], now: float, limit: Limit, window: float) -> float:
    """Seconds until one more attempt is allowed under `limit` (0: now)."""
    recent = sorted(stamp for stamp in stamps if stamp > now - window)
    beyond = len(recent) - limit.allowed + 1  # this attempt's place past the allowance
    if beyond <= 0:
        return 0.0
    if limit.backoff_seconds <= 0:  # a wall: until enough of them have left the window
        return max(0.0, recent[beyond - 1] + window - now)
    delay = min(limit.backoff_seconds * 2.0 ** min(beyond - 1, _EXTRA_STAMPS), window)
    return max(0.0, recent[-1] + delay - now)


class AttemptLimiter:
    """Counts attempts per key in a bucket every instance shares (its TTL is `window`)."""

    def __init__(
        self,
        bucket: Bucket,
        window: float,
        clock: Callable[[], float] = time.time,  # wall clock: stamps cross instances
    ) -> None:
        self._bucket = bucket
        self._window = window
        self._clock = clock

    async def acquire(self, keys: Sequence[tuple[str, Limit]]) -> float:
        """Count one attempt against every key, or raise `TooManyAttempts` counting none.

        Returns the attempt's stamp (to `release` it if it succeeds). Counting before the
        password check means concurrent guesses cannot overshoot.
        """
        now = self._clock()
        counted: list[str] = []
        for key, limit in keys:
            try:
                await self._count(key, limit, now)
            except TooManyAttempts:
                for done in counted:  # a refused attempt counts on none of its keys
                    await self.release(done, now)
                raise
            counted.append(key)
        return now

    async def release(self, key: str, stamp: float) -> None:
        """Uncount one attempt that turned out to be a success."""

        def without(stamps: list[float]) -> list[float] | None:
            if stamp not in stamps:
                return None
            kept = list(stamps)
            kept.remove(stamp)
            return kept

        await self._bucket.update(counter_key(key), _decode_stamps, without, _busy())

    async def reset(self, key: str) -> None:
        await self._bucket.delete(counter_key(key))

    async def _count(self, key: str, limit: Limit, now: float) -> None:
        """Add `now` to the key's recent stamps, or raise `TooManyAttempts` adding nothing."""

        def counted(stamps: list[float]) -> list[float]:
            wait = wait_before_next(stamps, now, limit, self._window)
            if wait > 0:
                raise TooManyAttempts(wait)
            recent = [stamp for stamp in stamps if stamp > now - self._window]
            return [*recent[-(limit.allowed + _EXTRA_STAMPS) :], now]

        name = counter_key(key)
        for _ in range(2):  # lost a create to another instance: update what it wrote
            if await self._bucket.update(name, _decode_stamps, counted, _busy()) is not None:
                return
            if await self._bucket.claim(name, _encode(counted([]))):
                return
        raise _busy()
