"""Limits and the ledger around one completion: admit before, settle and record after.

`Meter.start` counts the request against the caller's limits (429 when over) and returns
a `Metered`; its `done` settles the real token count and publishes the ledger record,
once, before the answer ends (see `gateway.ledger`).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from contracts.auth import Principal
from contracts.chat import BackendRef
from gateway.ledger import Ledger, Status, UsageRecord
from gateway.limiter import Limiter, Ticket


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int | None = None


class _Reply(msgspec.Struct):
    """What the ledger reads of a chat.completion: who answered, and the tokens."""

    model: str | None = None
    usage: _Usage | None = None


_reply = msgspec.json.Decoder(_Reply)


def reply_facts(body: bytes) -> tuple[str | None, dict[str, Any] | None]:
    """The answering model and the usage of a chat.completion reply (None when absent)."""
    try:
        reply = _reply.decode(body)
    except msgspec.DecodeError:
        return None, None
    usage = reply.usage
    if usage is None:
        return reply.model, None
    return reply.model, {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
    }


# what a request that failed before the backend answered used
NO_TOKENS: dict[str, Any] = {"prompt_tokens": 0, "completion_tokens": 0}


def estimate_tokens(body_bytes: int, max_tokens: int | None, default_completion: int) -> int:
    """Before the answer: about 4 bytes of prompt per token, plus what may be generated
    (`max_tokens=0`: nothing is, as for embeddings)."""
    return body_bytes // 4 + (default_completion if max_tokens is None else max_tokens)


def tokens_of(usage: dict[str, Any] | None) -> tuple[int, int] | None:
    if not usage:
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int):
        return prompt, completion
    total = usage.get("total_tokens")
    return (total, 0) if isinstance(total, int) else None


@dataclass
class Meter:
    limiter: Limiter | None
    ledger: Ledger | None
    completion_estimate: int

    async def start(
        self,
        principal: Principal,
        model: str,
        *,
        body_bytes: int,
        max_tokens: int | None,
        stream: bool,
        kind: str = "chat",
    ) -> Metered:
        estimate = estimate_tokens(body_bytes, max_tokens, self.completion_estimate)
        ticket = None
        if self.limiter is not None:
            ticket = await self.limiter.admit(principal, estimate)
        return Metered(self, principal, model, stream, ticket, time.perf_counter(), kind)


@dataclass
class Metered:
    meter: Meter
    principal: Principal
    model: str
    stream: bool
    ticket: Ticket | None
    started: float
    kind: str = "chat"
    finished: bool = False

    async def done(
        self,
        usage: dict[str, Any] | None,
        status: Status,
        model: str | None = None,
        backend: BackendRef | None = None,
    ) -> None:
        """Settle the limits and record the ledger entry (once; later calls do nothing)."""
        if self.finished:
            return
        self.finished = True
        tokens = tokens_of(usage)
        if self.meter.limiter is not None:
            self.meter.limiter.settle(self.ticket, None if tokens is None else sum(tokens))
        ledger = self.meter.ledger
        if ledger is None:
            return
        prompt, completion = tokens or (0, 0)
        entry = UsageRecord(
            id=os.urandom(12).hex(),
            at=time.time(),
            user_id=self.principal.id,
            key_id=self.principal.key.id if self.principal.key is not None else "",
            kind="embedding" if self.kind == "embedding" else "chat",
            model=model or self.model,
            backend=None if backend is None else backend.idx,
            backend_kind="" if backend is None else backend.kind,
            stream=self.stream,
            prompt_tokens=prompt,
            completion_tokens=completion,
            latency_ms=round((time.perf_counter() - self.started) * 1000, 2),
            status=status,
        )
        # a client that leaves must not cancel the record of what it was served
        await asyncio.shield(ledger.record(entry))
