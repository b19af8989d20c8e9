"""The failure limiter on its own, with a clock the test moves."""

from __future__ import annotations

from auth.ratelimit import FailureLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_attempts_expire_after_the_window() -> None:
    clock = Clock()
    limiter = FailureLimiter(max_failures=2, window=60, clock=clock)
    assert limiter.acquire(["k"]) is not None
    assert limiter.acquire(["k"]) is not None
    assert limiter.acquire(["k"]) is None
    clock.now += 61
    assert limiter.acquire(["k"]) is not None


def test_one_blocked_key_blocks_the_attempt_without_counting_it_on_the_others() -> None:
    limiter = FailureLimiter(max_failures=1, window=60, clock=Clock())
    assert limiter.acquire(["email:a", "addr:x"]) is not None
    assert limiter.acquire(["email:b", "addr:x"]) is None
    assert limiter.acquire(["email:b", "addr:y"]) is not None


def test_a_released_attempt_no_longer_counts() -> None:
    limiter = FailureLimiter(max_failures=1, window=60, clock=Clock())
    stamp = limiter.acquire(["k"])
    assert stamp is not None
    limiter.release("k", stamp)
    assert limiter.acquire(["k"]) is not None
    limiter.reset("k")
    assert limiter.acquire(["k"]) is not None
