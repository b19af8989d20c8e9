"""Failed sign-ins counted per key (an email, a client address) in a sliding window.

The counts live in a KV bucket, so every auth instance shares them: with N instances an
attacker still gets the limit, not N times it. Each key holds the stamps of its recent
attempts (JSON), changed by compare-and-set, so concurrent attempts on any instances
cannot overshoot; the bucket drops a key a window after its last write. Keys are hashes:
an email or address never appears in the bucket.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable

import msgspec

from catalog.buckets import Bucket
from common.errors import RagwayError

_decode_stamps = msgspec.json.Decoder(list[float]).decode
_encode = msgspec.json.Encoder().encode


def _busy() -> RagwayError:
    return RagwayError("unavailable", "Sign-in attempts are changing too fast; try again")


class _OverLimit(Exception):
    pass


def counter_key(key: str) -> str:
    """The bucket key of a counter: a hash (KV keys allow few characters; no emails kept)."""
    return hashlib.sha256(key.encode()).hexdigest()


class FailureLimiter:
    """Allows at most `max_failures` counted attempts per key within `window` seconds."""

    def __init__(
        self,
        bucket: Bucket,
        max_failures: int,
        window: float,
        clock: Callable[[], float] = time.time,  # wall clock: stamps cross instances
    ) -> None:
        self._bucket = bucket
        self._max = max_failures
        self._window = window
        self._clock = clock

    async def acquire(self, keys: Iterable[str]) -> float | None:
        """Count one attempt against every key, or none when any key is over the limit.

        Returns the attempt's stamp (to `release` it if it succeeds) or None when blocked.
        Counting before the password check means concurrent guesses cannot overshoot.
        """
        now = self._clock()
        counted: list[str] = []
        for key in keys:
            if not await self._count(key, now):
                for done in counted:  # a blocked attempt counts on none of its keys
                    await self.release(done, now)
                return None
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

    async def _count(self, key: str, now: float) -> bool:
        """Add `now` to the key's recent stamps; False (nothing added) when they are full."""

        def counted(stamps: list[float]) -> list[float]:
            recent = [stamp for stamp in stamps if stamp > now - self._window]
            if len(recent) >= self._max:
                raise _OverLimit
            return [*recent, now]

        name = counter_key(key)
        try:
            for _ in range(2):  # lost a create to another instance: update what it wrote
                if await self._bucket.update(name, _decode_stamps, counted, _busy()) is not None:
                    return True
                if await self._bucket.claim(name, _encode(counted([]))):
                    return True
        except _OverLimit:
            return False
        raise _busy()
