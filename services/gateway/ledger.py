"""The usage ledger: one durable JetStream record per completion, and its summaries.

Stream `<prefix>_usage` (subjects `<prefix>.usage.<user id>`, on disk, limits-based
retention). A record is published and its acknowledgement awaited *before* the answer
ends (before a stream's last bytes, before a plain reply is sent), so a gateway that dies
after answering cannot lose it; `Nats-Msg-Id` lets JetStream drop a retried duplicate.

`GET /api/v1/usage` reads the records of a time range through an ephemeral consumer
(starting at `from`, filtered to one user unless an admin asks for everyone) and sums
them by user, key, model, day or backend.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

import msgspec
import nats.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from catalog.buckets import once_jetstream_answers

log = structlog.get_logger()

GroupBy = Literal["user", "key", "model", "day", "backend"]
Status = Literal["ok", "error", "cancelled"]
FETCH_BATCH = 1000
PUBLISH_ATTEMPTS = 3


class UsageRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One completion (or embedding) as the ledger keeps it."""

    id: str
    at: float  # epoch seconds, when it ended
    user_id: str
    key_id: str = ""  # the named API key used, if any
    kind: Literal["chat", "embedding"] = "chat"
    model: str
    backend: int | None = None  # the backend's index, when the proxy said
    backend_kind: str = ""  # "openai" or "ollama": which list `backend` indexes
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    status: Status = "ok"


class UsageRow(msgspec.Struct, kw_only=True):
    group: str
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(UsageRecord).decode


class Ledger:
    def __init__(self, js: JetStreamContext, prefix: str) -> None:
        self._js = js
        self.stream = f"{prefix}_usage"
        self._prefix = f"{prefix}.usage"

    def subject(self, user_id: str) -> str:
        return f"{self._prefix}.{user_id}"

    async def ensure(self, replicas: int) -> None:
        config = StreamConfig(
            name=self.stream,
            subjects=[f"{self._prefix}.*"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=120.0,
        )

        async def open_or_create() -> None:
            try:
                await self._js.stream_info(self.stream)
                return
            except NotFoundError:
                pass
            try:
                await self._js.add_stream(config)
            except BadRequestError:
                await self._js.stream_info(self.stream)

        await once_jetstream_answers(self.stream, open_or_create)

    async def record(self, entry: UsageRecord) -> bool:
        """Publish and wait for JetStream's ack; False (logged) when it never came: the
        caller still answers, the bus being down is no reason to fail a paid answer."""
        data = _encode(entry)
        headers = {"Nats-Msg-Id": entry.id}
        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                await self._js.publish(
                    self.subject(entry.user_id), data, stream=self.stream, headers=headers
                )
                return True
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
                if attempt == PUBLISH_ATTEMPTS - 1:
                    log.error("usage_record_lost", record=entry.id, error=repr(exc))
            except Exception as exc:
                log.error("usage_record_lost", record=entry.id, error=repr(exc))
                break
        return False

    async def read(self, since: float, until: float, user_id: str | None) -> list[UsageRecord]:
        """Every record with `since <= at < until`, of one user or (None) of everyone."""
        subject = self.subject(user_id) if user_id else f"{self._prefix}.*"
        start = datetime.fromtimestamp(max(since - 1.0, 0.0), UTC)
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=start,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30.0,
            filter_subject=subject,
        )
        pull = await self._js.pull_subscribe(subject, stream=self.stream, config=config)
        records: list[UsageRecord] = []
        try:
            pending = (await pull.consumer_info()).num_pending or 0
            while pending > 0:
                batch = await pull.fetch(min(pending, FETCH_BATCH), timeout=5)
                pending -= len(batch)
                for msg in batch:
                    entry = _decode(msg.data)
                    if entry.at >= until:
                        pending = 0
                        break
                    if entry.at >= since:
                        records.append(entry)
        finally:
            try:
                await pull.unsubscribe()  # before anything drains (see MACHINE-NOTES)
            except Exception:
                log.debug("usage_read_unsubscribe_failed")
        return records


def summarize(records: Iterable[UsageRecord], group_by: GroupBy) -> list[UsageRow]:
    rows: dict[str, UsageRow] = {}
    for entry in records:
        if group_by == "user":
            group = entry.user_id
        elif group_by == "key":
            group = entry.key_id
        elif group_by == "model":
            group = entry.model
        elif group_by == "backend":
            group = backend_label(entry)
        else:
            group = datetime.fromtimestamp(entry.at, UTC).strftime("%Y-%m-%d")
        row = rows.get(group)
        if row is None:
            row = rows[group] = UsageRow(group=group)
        row.requests += 1
        row.errors += entry.status != "ok"
        row.prompt_tokens += entry.prompt_tokens
        row.completion_tokens += entry.completion_tokens
        row.total_tokens += entry.prompt_tokens + entry.completion_tokens
    return sorted(rows.values(), key=lambda r: r.group)


def backend_label(entry: UsageRecord) -> str:
    """`openai/0`, `ollama/1`; "" when no backend answered (a function model, an error)."""
    if entry.backend is None:
        return ""
    return f"{entry.backend_kind or 'openai'}/{entry.backend}"


def now() -> float:
    return time.time()
