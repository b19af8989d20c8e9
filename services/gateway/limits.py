"""Limit definitions: who they apply to, and the tightest set for one request.

A limit names a scope and a target: a role (every user of it, each counted alone), a
group (each member alone), a user, or a named API key. Role, group and user limits bind
the user's own counter; key limits bind the key's counter. For each dimension the
tightest applicable value wins, and the limit it came from is named in the 429.

Definitions live in the KV bucket `<prefix>_limits` (key `<scope>.<target>`, which is also
the limit's id); every gateway follows the bucket and keeps them in memory, so checking
which limits apply costs no NATS round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Annotated, Literal

import msgspec
import structlog

from catalog.buckets import Bucket
from contracts.auth import Principal

log = structlog.get_logger()

LimitScope = Literal["role", "group", "user", "key"]
Period = Literal["day", "month"]
Count = Annotated[int, msgspec.Meta(ge=0)]
Target = Annotated[str, msgspec.Meta(pattern=r"^[-_a-zA-Z0-9]{1,128}$")]
DIMENSIONS = ("rpm", "tpm", "concurrent", "day", "month")


class Budget(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    tokens: Count
    period: Period


class LimitForm(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """HTTP body of `POST /api/v1/limits`: set (or replace) the limit of one target."""

    scope: LimitScope
    id: Target
    rpm: Count | None = None
    tpm: Count | None = None
    concurrent: Count | None = None
    budget: Budget | None = None


class Limit(msgspec.Struct, kw_only=True):
    """A stored limit; `limit_id` is `<scope>.<target>`."""

    limit_id: str
    scope: LimitScope
    id: str
    rpm: int | None = None
    tpm: int | None = None
    concurrent: int | None = None
    budget: Budget | None = None
    updated_at: int = 0

    def values(self) -> dict[str, int]:
        """This limit's dimensions that are set (budgets by period)."""
        found = {
            name: value
            for name, value in (
                ("rpm", self.rpm),
                ("tpm", self.tpm),
                ("concurrent", self.concurrent),
            )
            if value is not None
        }
        if self.budget is not None:
            found[self.budget.period] = self.budget.tokens
        return found


def limit_key(scope: str, target: str) -> str:
    return f"{scope}.{target}"


@dataclass(frozen=True, slots=True)
class Bound:
    """One dimension's tightest value and the limit that set it."""

    value: int
    limit_id: str


@dataclass(frozen=True, slots=True)
class Binding:
    """What binds one counter (`u.<user>` or `k.<key>`) for one request."""

    counter: str
    bounds: dict[str, Bound]


_decode = msgspec.json.Decoder(Limit).decode


@dataclass
class LimitBook:
    """Every limit, by scope and target, kept current from the bucket."""

    bucket: Bucket
    by_key: dict[str, Limit] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def bindings(self, principal: Principal) -> list[Binding]:
        """The counters this caller's request is charged to, with their tightest bounds;
        empty when no limit applies (then nothing is counted at all)."""
        book = self.by_key
        if not book:
            return []
        found: list[Binding] = []
        user_limits = [
            book.get(limit_key("role", principal.role)),
            *(book.get(limit_key("group", g)) for g in principal.group_ids),
            book.get(limit_key("user", principal.id)),
        ]
        bounds = _tightest(user_limits)
        if bounds:
            found.append(Binding(f"u.{principal.id}", bounds))
        if principal.key is not None:
            key_bounds = _tightest([book.get(limit_key("key", principal.key.id))])
            if key_bounds:
                found.append(Binding(f"k.{principal.key.id}", key_bounds))
        return found

    async def follow(self) -> None:
        """Mirror the bucket until cancelled; re-subscribes after a failure."""
        while True:
            try:
                async with contextlib.aclosing(self.bucket.follow()) as changes:
                    fresh: dict[str, Limit] = {}
                    loaded = False
                    async for change in changes:
                        if change is None:
                            self.by_key, loaded = fresh, True
                            self.ready.set()
                            continue
                        key, value = change
                        target = self.by_key if loaded else fresh
                        if value is None:
                            target.pop(key, None)
                        else:
                            target[key] = _decode(value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("limits_follow_failed", error=repr(exc))
                await asyncio.sleep(1.0)


def _tightest(limits: list[Limit | None]) -> dict[str, Bound]:
    bounds: dict[str, Bound] = {}
    for limit in limits:
        if limit is None:
            continue
        for name, value in limit.values().items():
            current = bounds.get(name)
            if current is None or value < current.value:
                bounds[name] = Bound(value, limit.limit_id)
    return bounds
