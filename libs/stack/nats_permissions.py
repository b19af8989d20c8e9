"""Who may publish and subscribe to what on NATS, derived from `contracts.subjects`.

Every subject is declared once with its owner and its senders (`ALL_SUBJECTS`); this
module turns those declarations into one allow list per service, so a new subject is in
some service's table the moment it is declared. Replies need no publish permission:
services answer through NATS's response permissions (`allow_responses`). Each service
receives on its own inbox prefix (`_INBOX_<service>`) only, so none can read another's
replies or streamed answers. The owner of a streaming endpoint may publish into its
callers' stream inboxes (`_INBOX_<caller>.stream.>`) and nowhere else in their inboxes,
so it cannot answer a request meant for another service.

JetStream is reached through its API subjects: each service may use the API of the KV
buckets, object stores and streams it opens (`JETSTREAM_USE`, by name after the bucket
prefix) and nothing else. Within those, it may also create or delete them (they are
created on first start by whoever comes first).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from common.inbox import stream_prefix
from common.nats_conn import inbox_prefix
from contracts import subjects
from contracts.auth import Principal
from contracts.endpoint import Endpoint, Event, WorkQueue

GATEWAY = subjects.GATEWAY_SERVICE
SERVICES = (*subjects.BACKEND_SERVICES, GATEWAY)
# the launcher and an operator's tools: they ask each service's discovery subject whether
# it is up (as the gateway's /health does) and call the endpoints declared for no service
# (maintenance reads, e.g. what the vector store holds for a file)
OPERATOR = "operator"
USERS = (*SERVICES, OPERATOR)


class JetStreamUse(msgspec.Struct, frozen=True, kw_only=True):
    """What a service opens in JetStream: KV buckets and object stores by their name after
    `<bucket prefix>_`, streams by their full name."""

    buckets: tuple[str, ...] = ()
    object_stores: tuple[str, ...] = ()
    streams: tuple[str, ...] = ()
    # streams named `<bucket prefix>_<name>` whose subjects are `<bucket prefix>.<name>.*`,
    # written by this service (the gateway's usage ledger)
    prefixed_streams: tuple[str, ...] = ()


_FILE_CATALOG = ("files", "file_hashes", "file_owners", "storage_usage")
_INGEST_STREAM = (subjects.INGEST_JOBS.stream,)
# failed jobs (ingestion writes them, the gateway lists and retries them)
_DEAD_STREAM = (subjects.INGEST_DEAD_STREAM,)
JETSTREAM_USE: dict[str, JetStreamUse] = {
    subjects.AUTH_SERVICE: JetStreamUse(
        buckets=(
            "users",
            "user_emails",
            "api_keys",
            "auth_meta",
            "groups",
            "signin_failures",
            "signup_attempts",
            "named_keys",
            "named_key_hashes",
        )
    ),
    subjects.INFERENCE_SERVICE: JetStreamUse(buckets=("functions", "tools", "valves")),
    subjects.INGESTION_SERVICE: JetStreamUse(
        buckets=_FILE_CATALOG,
        object_stores=("blobs",),
        streams=(
            *_INGEST_STREAM,
            *_DEAD_STREAM,
            subjects.advisory_stream(subjects.INGEST_JOBS.stream),
        ),
    ),
    subjects.RETRIEVAL_SERVICE: JetStreamUse(
        buckets=(*_FILE_CATALOG, "knowledge", "vector_index"), object_stores=("blobs",)
    ),
    GATEWAY: JetStreamUse(
        buckets=(*_FILE_CATALOG, "presets", "chats", "limits", "limit_usage"),
        object_stores=("blobs",),
        streams=(*_INGEST_STREAM, *_DEAD_STREAM),
        prefixed_streams=("usage",),
    ),
}


class Permissions(msgspec.Struct, frozen=True, kw_only=True):
    """One NATS user's allow lists (nothing else is allowed)."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    # may answer the requests it receives (their reply subjects), once each
    allow_responses: bool


JS_ACCOUNT_INFO = "$JS.API.INFO"


def permissions_for(user: str, bucket_prefix: str = "ragway") -> Permissions:
    """`user`'s allow lists: its own subjects per the contract, its inbox, its JetStream."""
    pings = [subjects.ping_subject(name) for name in subjects.BACKEND_SERVICES]
    if user == OPERATOR:
        operator_calls = [
            item.subject
            for item in subjects.ALL_SUBJECTS
            if isinstance(item, Endpoint) and not item.callers
        ]
        return Permissions(
            # $JS.API.INFO: whether JetStream answers (the launcher's readiness check); it
            # tells the account's totals, no stream's name or content
            publish=(*pings, *operator_calls, JS_ACCOUNT_INFO),
            subscribe=(inbox_prefix(user) + ".>",),
            allow_responses=False,
        )
    if user not in SERVICES:
        raise ValueError(f"no NATS user {user!r}; known: {', '.join(USERS)}")
    publish: list[str] = []
    subscribe: list[str] = [inbox_prefix(user) + ".>"]
    for item in subjects.ALL_SUBJECTS:
        if isinstance(item, Endpoint):
            if item.owner == user:
                subscribe.append(item.subject)
                if item.streams:  # the stream goes to the caller's stream inbox it named
                    publish.extend(
                        stream_prefix(inbox_prefix(caller)) + ".>" for caller in item.callers
                    )
            if user in item.callers:
                publish.append(item.subject)
        elif isinstance(item, Event):
            if user in item.publishers:
                publish.append(item.subject)
            if user in item.subscribers:
                subscribe.append(item.subject)
        elif isinstance(item, WorkQueue) and user in item.publishers:
            publish.append(item.subject)
    # every service registers with nats.micro (the gateway with no endpoints) and answers
    # discovery: $SRV.PING, $SRV.PING.<name>, $SRV.PING.<name>.<id> (and INFO, STATS)
    subscribe.extend(subjects.discovery_subjects(user))
    # GET /metrics: the gateway asks every service (gateways too) for its stats and metrics
    subscribe.append(subjects.metrics_subject(user))
    if user == GATEWAY:  # GET /health: every backend service answers its ping
        publish.extend(pings)
        publish.extend(subjects.stats_subject(name) for name in SERVICES)
        publish.extend(subjects.metrics_subject(name) for name in SERVICES)
    publish.extend(jetstream_subjects(JETSTREAM_USE[user], bucket_prefix))
    return Permissions(publish=_unique(publish), subscribe=_unique(subscribe), allow_responses=True)


def principal_subjects() -> list[str]:
    """The subjects whose messages hold a `Principal` (anywhere inside): the services that
    receive them act as that user, so only the gateway may send them (tests check it)."""
    found = []
    for item in subjects.ALL_SUBJECTS:
        message = item.request if isinstance(item, Endpoint) else item.message
        if _carries_principal(msgspec.inspect.type_info(message), set()):
            found.append(item.subject)
    return found


def _carries_principal(info: msgspec.inspect.Type, seen: set[type]) -> bool:
    if isinstance(info, msgspec.inspect.StructType):
        if info.cls is Principal:
            return True
        if info.cls in seen:
            return False
        seen.add(info.cls)
        return any(_carries_principal(field.type, seen) for field in info.fields)
    children: list[msgspec.inspect.Type] = [
        getattr(info, name)
        for name in ("item_type", "key_type", "value_type")
        if hasattr(info, name)
    ]
    children += getattr(info, "types", ())
    children += getattr(info, "item_types", ())
    return any(_carries_principal(child, seen) for child in children)


def jetstream_subjects(use: JetStreamUse, bucket_prefix: str) -> list[str]:
    """The JetStream API and data subjects of these buckets, stores and streams only."""
    found: list[str] = []
    streams = list(use.streams)
    for name in use.prefixed_streams:
        streams.append(f"{bucket_prefix}_{name}")
        found.append(f"{bucket_prefix}.{name}.*")
    for bucket in use.buckets:
        name = f"{bucket_prefix}_{bucket}"
        streams.append(f"KV_{name}")
        found.append(f"$KV.{name}.>")
    for store in use.object_stores:
        name = f"{bucket_prefix}_{store}"
        streams.append(f"OBJ_{name}")
        found.append(f"$O.{name}.>")
    if not streams:
        return found
    found.append(JS_ACCOUNT_INFO)
    for stream in streams:
        # $JS.API.STREAM.INFO.<s>, $JS.API.DIRECT.GET.<s>.<subject>, $JS.API.STREAM.MSG.GET.<s>,
        # $JS.API.CONSUMER.CREATE.<s>.<name>.<filter>, ...MSG.NEXT.<s>.<consumer>
        found.extend(
            (
                f"$JS.API.*.*.{stream}",
                f"$JS.API.*.*.{stream}.>",
                f"$JS.API.*.*.*.{stream}",
                f"$JS.API.*.*.*.{stream}.>",
                f"$JS.ACK.{stream}.>",
                f"$JS.FC.{stream}.>",
            )
        )
    return found


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
