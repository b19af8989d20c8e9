"""The kinds of subject ragway uses, each typed by the message it carries.

`contracts.subjects` declares every subject once with one of these; callers (`common.bus.
Bus`) and hosts (`common.service.ServiceHost`) take the declaration, so no call site pairs
a subject with its types or its owner by hand. Who sends and who listens is part of each
declaration, so a table of NATS permissions per service can be derived from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

Req = TypeVar("Req")
Rep = TypeVar("Rep")
M = TypeVar("M")

# Who may send on a subject and who listens, for the permission table.
Direction = Literal["request", "to_owner", "from_owner", "work_queue"]
WILDCARD = "*"


@dataclass(frozen=True, slots=True)
class Endpoint(Generic[Req, Rep]):
    """A request/reply subject served by `owner` (a nats.micro service, in its queue group).

    `reply` is what the owner answers; a handler may answer with the value already encoded
    (`msgspec.Raw`), and a caller that only relays it may keep it as bytes. `streams`: the
    owner also publishes a stream to the inbox the request names (`stream_inbox`).
    """

    subject: str
    request: type[Req]
    reply: type[Rep]
    owner: str
    callers: tuple[str, ...]
    streams: bool = False

    @property
    def direction(self) -> Direction:
        return "request"


@dataclass(frozen=True, slots=True)
class Event(Generic[M]):
    """A one-way message, no reply. `from_owner`: the owner announces (listeners follow);
    `to_owner`: others tell the owner (e.g. a cancel). A subject ending in `.*` takes one
    token per message (`subject_for`)."""

    subject: str
    message: type[M]
    owner: str
    direction: Literal["to_owner", "from_owner"]
    publishers: tuple[str, ...]
    subscribers: tuple[str, ...]

    def subject_for(self, token: str) -> str:
        """The concrete subject of a wildcard event, e.g. a stream's cancel subject."""
        if not self.subject.endswith("." + WILDCARD):
            raise ValueError(f"{self.subject} takes no token")
        if not token or "." in token or WILDCARD in token or ">" in token:
            raise ValueError(f"not a subject token: {token!r}")
        return self.subject[:-1] + token

    def token_of(self, subject: str) -> str:
        """The token a concrete subject of this wildcard event carries."""
        return subject.rsplit(".", 1)[-1]


@dataclass(frozen=True, slots=True)
class WorkQueue(Generic[M]):
    """A JetStream work-queue: `publishers` put messages on `subject` (captured by
    `stream`), the owner's workers pull them through the durable `consumer`."""

    subject: str
    message: type[M]
    owner: str
    publishers: tuple[str, ...]
    stream: str
    consumer: str

    @property
    def direction(self) -> Direction:
        return "work_queue"


Declared = Endpoint[Any, Any] | Event[Any] | WorkQueue[Any]
