"""Counting requests and tokens against limits, shared by every gateway, cheap per request.

Each counter (`u.<user>`, `k.<key>`) is one KV entry (`<prefix>_limit_usage`) holding the
current minute's requests and tokens, the day's and month's tokens, and the streams in
flight. Gateways change it only by compare-and-set, so they never overcount together.

The hot path does not ask KV per request. A gateway *reserves* credit (requests and
tokens) from the shared counter in small blocks — a quarter of what is left, capped —
and admits requests against its local credit; when the credit runs low it reserves the
next block in the background. Near a limit the blocks shrink to what one request needs,
so every request then reserves for itself: no gateway ever admits beyond what the shared
counter granted it. Tokens are estimated before (prompt bytes / 4 + `max_tokens` or a
default) and settled after from the backend's `usage`: a difference changes the local
credit, and a debt is charged to KV at once (so the overspend is at most what requests
already in flight use beyond their estimates). Credit left when a minute ends goes back
to the day and month budgets; credit left at shutdown goes back entirely.

Concurrency (`concurrent`) cannot be reserved ahead: a request under such a limit takes
a stream slot by compare-and-set (one KV round trip) and gives it back after; a slot of a
gateway that died expires after `stream_slot_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec
import structlog
from nats.js.errors import KeyWrongLastSequenceError

from catalog.buckets import Bucket
from common.errors import RagwayError
from common.tasks import BackgroundTasks
from contracts.auth import Principal
from gateway.limits import Binding, Bound, LimitBook

log = structlog.get_logger()

SHARE = 4  # a reservation takes at most this fraction of what is left
MAX_REQUEST_BLOCK = 64
TOKEN_BLOCK_REQUESTS = 16  # a token block covers at most this many estimated requests
TOKEN_DIMENSIONS = ("tpm", "day", "month")
LABELS = {
    "rpm": "requests per minute",
    "tpm": "tokens per minute",
    "concurrent": "requests at once",
    "day": "tokens per day",
    "month": "tokens per month",
}
FLUSH_SECONDS = 1.0
DAY = 86_400


class RateLimited(RagwayError):
    """Over a limit: 429 with `Retry-After`."""

    def __init__(self, detail: str, retry_after: int, dimension: str = "") -> None:
        super().__init__("rate_limited", detail)
        self.retry_after = retry_after
        self.dimension = dimension  # which bound: rpm, tpm, day, month, ...


class Usage(msgspec.Struct, kw_only=True):
    """One counter as stored."""

    minute: int = 0
    requests: int = 0
    tokens: int = 0
    day: str = ""
    day_tokens: int = 0
    month: str = ""
    month_tokens: int = 0
    streams: dict[str, float] = {}  # slot id -> expiry (epoch seconds)


_decode_usage = msgspec.json.Decoder(Usage).decode
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Clock:
    """The windows at one instant (UTC): the minute, the day, the month."""

    now: float
    minute: int
    day: str
    month: str

    @classmethod
    def at(cls, now: float, earlier: Clock | None = None) -> Clock:
        """`earlier`'s day and month names when it is the same UTC day (formatting a
        date is most of what admitting a request costs)."""
        if earlier is not None and int(earlier.now // DAY) == int(now // DAY):
            return cls(now, int(now // 60), earlier.day, earlier.month)
        stamp = datetime.fromtimestamp(now, UTC)
        return cls(now, int(now // 60), stamp.strftime("%Y-%m-%d"), stamp.strftime("%Y-%m"))

    def retry_after(self, dimension: str) -> int:
        stamp = datetime.fromtimestamp(self.now, UTC)
        if dimension in ("rpm", "tpm"):
            end = (self.minute + 1) * 60.0
        elif dimension == "day":
            end = (
                stamp.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
            ).timestamp()
        elif dimension == "month":
            first = stamp.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            end = (first + timedelta(days=32)).replace(day=1).timestamp()
        else:
            return 1
        return max(1, math.ceil(end - self.now))


def rolled(usage: Usage, clock: Clock) -> Usage:
    """The counter as of `clock`: past windows emptied, expired stream slots dropped."""
    if usage.minute != clock.minute:
        usage.minute, usage.requests, usage.tokens = clock.minute, 0, 0
    if usage.day != clock.day:
        usage.day, usage.day_tokens = clock.day, 0
    if usage.month != clock.month:
        usage.month, usage.month_tokens = clock.month, 0
    if usage.streams:
        usage.streams = {k: v for k, v in usage.streams.items() if v > clock.now}
    return usage


class _Over(Exception):
    def __init__(self, dimension: str) -> None:
        self.dimension = dimension


@dataclass(slots=True)
class Change:
    """One compare-and-set on a counter: what it asks for, and what it got."""

    bounds: dict[str, Bound]
    need_requests: int = 0  # must be granted, or the change fails (over the limit)
    need_tokens: int = 0
    want_blocks: bool = True  # also reserve ahead
    charge_tokens: int = 0  # forced: tokens already used (a settled debt)
    refund_budget: int = 0  # forced: credit from a past minute given back to day/month
    return_requests: int = 0  # forced: credit of this minute given back (shutdown)
    return_tokens: int = 0
    take_slot: str = ""
    drop_slot: str = ""
    slot_expires: float = 0.0
    granted_requests: int = 0
    granted_tokens: int = 0

    def apply(self, usage: Usage, clock: Clock, estimate: int) -> Usage:
        usage = rolled(usage, clock)
        b = self.bounds
        usage.requests = max(0, usage.requests - self.return_requests)
        usage.tokens = max(0, usage.tokens - self.return_tokens)
        back = self.refund_budget + self.return_tokens
        usage.day_tokens = max(0, usage.day_tokens - back)
        usage.month_tokens = max(0, usage.month_tokens - back)
        if self.charge_tokens:
            usage.tokens += self.charge_tokens
            usage.day_tokens += self.charge_tokens
            usage.month_tokens += self.charge_tokens
        if self.drop_slot:
            usage.streams = {k: v for k, v in usage.streams.items() if k != self.drop_slot}
        self.granted_requests = self.granted_tokens = 0
        if "rpm" in b and (self.need_requests or self.want_blocks):
            left = b["rpm"].value - usage.requests
            if left < self.need_requests:
                raise _Over("rpm")
            block = min(MAX_REQUEST_BLOCK, left // SHARE) if self.want_blocks else 0
            self.granted_requests = max(self.need_requests, min(left, block))
            usage.requests += self.granted_requests
        token_dims = [d for d in TOKEN_DIMENSIONS if d in b]
        if token_dims and (self.need_tokens or self.want_blocks):
            used = {"tpm": usage.tokens, "day": usage.day_tokens, "month": usage.month_tokens}
            lefts = {d: b[d].value - used[d] for d in token_dims}
            tightest = min(token_dims, key=lambda d: lefts[d])
            left = lefts[tightest]
            if left < self.need_tokens:
                raise _Over(tightest)
            cap = TOKEN_BLOCK_REQUESTS * max(estimate, 1)
            block = min(cap, left // SHARE) if self.want_blocks else 0
            self.granted_tokens = max(self.need_tokens, min(max(left, 0), block))
            usage.tokens += self.granted_tokens
            usage.day_tokens += self.granted_tokens
            usage.month_tokens += self.granted_tokens
        if self.take_slot:
            if len(usage.streams) >= b["concurrent"].value:
                raise _Over("concurrent")
            usage.streams = {**usage.streams, self.take_slot: self.slot_expires}
        return usage


@dataclass(slots=True)
class Credit:
    """What this gateway reserved from one counter and has not used yet."""

    minute: int = -1
    requests: int = 0
    tokens: int = 0
    refund_budget: int = 0  # owed back to day/month (credit of a past minute, overestimates)
    debt: int = 0  # tokens used beyond what was reserved, not yet charged
    bounds: dict[str, Bound] = field(default_factory=dict)
    # one reservation at a time per counter and gateway: requests arriving meanwhile wait
    # for it and use what it brought, rather than each reserving (and refusing) alone
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    refilling: bool = False
    block_requests: int = 0
    block_tokens: int = 0
    estimate: int = 1

    def roll(self, minute: int) -> None:
        if self.minute != minute:
            self.refund_budget += max(self.tokens, 0)
            self.minute, self.requests, self.tokens = minute, 0, 0


@dataclass(slots=True)
class Hold:
    """One request's charge on one counter, for settling."""

    counter: str
    minute: int
    tokens: int
    slot: str = ""


@dataclass(slots=True)
class Ticket:
    holds: list[Hold]
    estimate: int


class Limiter:
    """Admits and settles requests against the limits in `book`."""

    def __init__(
        self,
        book: LimitBook,
        usage: Bucket,
        *,
        stream_slot_seconds: float,
    ) -> None:
        self.book = book
        self._usage = usage
        self._slot_seconds = stream_slot_seconds
        self._credits: dict[str, Credit] = {}
        self._tasks = BackgroundTasks()
        self._last: Clock | None = None

    def _now(self) -> Clock:
        self._last = Clock.at(time.time(), self._last)
        return self._last

    async def admit(self, principal: Principal, estimate: int) -> Ticket | None:
        """Count one request of about `estimate` tokens, or raise RateLimited.

        None when no limit applies to the caller (nothing is counted then)."""
        bindings = self.book.bindings(principal)
        if not bindings:
            return None
        clock = self._now()
        ticket = Ticket([], estimate)
        try:
            for binding in bindings:
                ticket.holds.append(await self._take(binding, estimate, clock))
        except BaseException:
            self._give_back(ticket)
            raise
        return ticket

    def _give_back(self, ticket: Ticket) -> None:
        """A request refused by a later counter: what its earlier holds took goes back to
        the shared counter (not to this gateway's credit, where others could not use it)."""
        for hold in ticket.holds:
            credit = self._credits[hold.counter]
            change = Change(
                credit.bounds,
                want_blocks=False,
                return_requests=1 if "rpm" in credit.bounds else 0,
                return_tokens=hold.tokens,
                drop_slot=hold.slot,
            )
            self._tasks.spawn(self._return(hold.counter, credit, change, hold.minute))

    async def _return(self, counter: str, credit: Credit, change: Change, minute: int) -> None:
        clock = self._now()
        if clock.minute != minute:  # that window is gone: only the budgets get tokens back
            change.refund_budget, change.return_requests, change.return_tokens = (
                change.return_tokens,
                0,
                0,
            )
        try:
            await self._change(counter, change, clock, credit)
        except Exception as exc:
            log.warning("limit_return_failed", counter=counter, error=repr(exc))

    async def _take(self, binding: Binding, estimate: int, clock: Clock) -> Hold:
        bounds = binding.bounds
        credit = self._credits.get(binding.counter)
        if credit is None:
            credit = self._credits[binding.counter] = Credit()
        credit.bounds, credit.estimate = bounds, max(estimate, 1)
        credit.roll(clock.minute)
        need_r = 1 if "rpm" in bounds else 0
        need_t = estimate if any(d in bounds for d in TOKEN_DIMENSIONS) else 0
        hold = Hold(binding.counter, clock.minute, need_t)
        if "concurrent" in bounds:
            hold.slot = os.urandom(8).hex()
        if hold.slot or credit.requests < need_r or credit.tokens < need_t:
            async with credit.lock:
                credit.roll(clock.minute)
                if hold.slot or credit.requests < need_r or credit.tokens < need_t:
                    change = Change(
                        bounds,
                        need_requests=max(need_r - credit.requests, 0),
                        need_tokens=max(need_t - max(credit.tokens, 0), 0),
                        take_slot=hold.slot,
                        slot_expires=clock.now + self._slot_seconds,
                    )
                    await self._change(binding.counter, change, clock, credit)
        credit.requests -= need_r
        credit.tokens -= need_t
        self._maybe_refill(binding.counter, credit)
        return hold

    def settle(self, ticket: Ticket | None, used_tokens: int | None) -> None:
        """After the answer: charge what was really used (`None`: unknown, the estimate
        stands), give a stream slot back. Never waits; KV work runs in the background."""
        if ticket is None:
            return
        minute = int(time.time() // 60)
        for hold in ticket.holds:
            credit = self._credits.get(hold.counter)
            if credit is None:
                continue
            if hold.tokens and used_tokens is not None:
                difference = hold.tokens - used_tokens  # > 0: overestimated
                if credit.minute == hold.minute == minute:
                    credit.tokens += difference
                elif difference > 0:
                    credit.refund_budget += difference
                else:
                    credit.debt -= difference
                if credit.tokens < 0:
                    credit.debt -= credit.tokens
                    credit.tokens = 0
            if hold.slot or credit.debt or credit.refund_budget:
                self._tasks.spawn(self._flush(hold.counter, credit, hold.slot))

    def _maybe_refill(self, counter: str, credit: Credit) -> None:
        low_r = "rpm" in credit.bounds and credit.requests * 2 < max(credit.block_requests, 2)
        low_t = any(d in credit.bounds for d in TOKEN_DIMENSIONS) and (
            credit.tokens * 2 < max(credit.block_tokens, 2 * credit.estimate)
        )
        if (low_r or low_t) and not credit.refilling:
            credit.refilling = True
            self._tasks.spawn(self._refill(counter, credit))

    async def _refill(self, counter: str, credit: Credit) -> None:
        try:
            async with credit.lock:
                clock = self._now()
                credit.roll(clock.minute)
                await self._change(counter, Change(credit.bounds), clock, credit)
        except _Over:
            pass  # nothing left to reserve ahead: requests reserve for themselves
        except Exception as exc:
            log.warning("limit_refill_failed", counter=counter, error=repr(exc))
        finally:
            credit.refilling = False

    async def _flush(self, counter: str, credit: Credit, slot: str = "") -> None:
        clock = self._now()
        credit.roll(clock.minute)
        change = Change(
            credit.bounds,
            want_blocks=False,
            charge_tokens=credit.debt,
            refund_budget=credit.refund_budget,
            drop_slot=slot,
        )
        credit.debt = credit.refund_budget = 0
        try:
            await self._change(counter, change, clock, credit)
        except Exception as exc:  # what it carried went back to the credit: tried again later
            log.warning("limit_settle_failed", counter=counter, error=repr(exc))

    async def _change(self, counter: str, change: Change, clock: Clock, credit: Credit) -> None:
        """Apply `change` by compare-and-set; the credit it granted joins `credit`.
        Pending refunds and debts ride along."""
        if change.want_blocks or change.need_requests or change.need_tokens:
            change.refund_budget += credit.refund_budget
            change.charge_tokens += credit.debt
            credit.refund_budget = credit.debt = 0
        try:
            for _ in range(50):
                found = await self._usage.entry(counter)
                usage = Usage() if found is None else _decode_usage(found.value)
                try:
                    after = change.apply(usage, clock, credit.estimate)
                except _Over as over:
                    bound = change.bounds[over.dimension]
                    raise RateLimited(
                        f"Limit reached: {bound.value} {LABELS[over.dimension]} "
                        f"(limit {bound.limit_id}); try again later",
                        clock.retry_after(over.dimension),
                        over.dimension,
                    ) from None
                if await self._write(counter, after, None if found is None else found.revision):
                    break
                await asyncio.sleep(0.001)
            else:
                raise RagwayError("unavailable", "Usage counters are too busy; try again")
        except BaseException:
            credit.refund_budget += change.refund_budget
            credit.debt += change.charge_tokens
            raise
        credit.requests += change.granted_requests
        credit.tokens += change.granted_tokens
        if change.granted_requests > 1:
            credit.block_requests = change.granted_requests
        if change.granted_tokens > change.need_tokens:
            credit.block_tokens = change.granted_tokens

    async def _write(self, counter: str, usage: Usage, revision: int | None) -> bool:
        """False when another writer got there first."""
        kv = self._usage.kv
        try:
            if revision is None:
                await kv.create(counter, _encode(usage))
            else:
                await kv.update(counter, _encode(usage), last=revision)
        except KeyWrongLastSequenceError:
            return False
        return True

    async def idle(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until the background settlements and refills are done."""
        await self._tasks.drain(timeout)

    async def run_flusher(self) -> None:
        """Every second: credit of a past minute goes back to the budgets."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            minute = int(time.time() // 60)
            for counter, credit in list(self._credits.items()):
                credit.roll(minute)
                if (credit.refund_budget or credit.debt) and not credit.refilling:
                    self._tasks.spawn(self._flush(counter, credit))

    async def aclose(self) -> None:
        """Give unused credit back, so a restart loses no one's allowance."""
        await self._tasks.drain(2.0)
        clock = self._now()
        for counter, credit in self._credits.items():
            credit.roll(clock.minute)
            change = Change(
                credit.bounds,
                want_blocks=False,
                return_requests=max(credit.requests, 0),
                return_tokens=max(credit.tokens, 0),
                charge_tokens=credit.debt,
                refund_budget=credit.refund_budget,
            )
            credit.requests = credit.tokens = credit.debt = credit.refund_budget = 0
            with contextlib.suppress(Exception):
                await self._change(counter, change, clock, credit)
