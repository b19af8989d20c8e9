"""Each service's NATS allow lists follow from the subjects the contract declares."""

from __future__ import annotations

from typing import Any

import pytest

from contracts import subjects
from contracts.endpoint import Endpoint, Event, WorkQueue
from stack.nats_permissions import (
    JETSTREAM_USE,
    OPERATOR,
    SERVICES,
    USERS,
    permissions_for,
    principal_subjects,
)

GATEWAY = subjects.GATEWAY_SERVICE


def test_every_declared_subject_is_in_some_users_table() -> None:
    allowed = {
        subject
        for user in USERS
        for subject in (*permissions_for(user).publish, *permissions_for(user).subscribe)
    }
    for item in subjects.ALL_SUBJECTS:
        assert item.subject in allowed, f"{item.subject} is in no service's permissions"


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_serves_exactly_the_endpoints_it_owns_and_calls_only_those_it_is_a_caller_of(
    service: str,
) -> None:
    table = permissions_for(service)
    for item in subjects.ALL_SUBJECTS:
        if not isinstance(item, Endpoint):
            continue
        assert (item.subject in table.subscribe) == (item.owner == service), item.subject
        assert (item.subject in table.publish) == (service in item.callers), item.subject


@pytest.mark.parametrize("service", SERVICES)
def test_events_and_work_queues_follow_their_declared_publishers_and_subscribers(
    service: str,
) -> None:
    table = permissions_for(service)
    for item in subjects.ALL_SUBJECTS:
        if isinstance(item, Event):
            assert (item.subject in table.publish) == (service in item.publishers)
            assert (item.subject in table.subscribe) == (service in item.subscribers)
        elif isinstance(item, WorkQueue):
            assert (item.subject in table.publish) == (service in item.publishers)
            assert item.subject not in table.subscribe  # workers pull through JetStream


def test_only_the_gateway_may_ask_for_the_jwt_secret() -> None:
    askers = [s for s in (*SERVICES, OPERATOR) if "ragway.auth.jwt_params" in _pub(s)]
    assert askers == [GATEWAY]


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_subscribes_to_its_own_inbox_and_no_wildcard_beyond_it(service: str) -> None:
    table = permissions_for(service)
    inboxes = [s for s in table.subscribe if s.startswith("_INBOX")]
    assert inboxes == [f"_INBOX_{service}.>"]
    for subject in table.subscribe:
        assert subject != ">" and not subject.startswith(("_INBOX.", "$JS.API")), subject


def test_only_the_owner_of_a_streaming_endpoint_may_publish_into_its_callers_inboxes() -> None:
    streams = f"_INBOX_{GATEWAY}.stream.>"
    writers = [s for s in USERS if streams in permissions_for(s).publish]
    assert writers == [subjects.INFERENCE_SERVICE]  # chat and Ollama streams
    for user in USERS:
        for subject in permissions_for(user).publish:
            # never the replies to plain requests: nobody answers in place of their owner
            assert not subject.startswith("_INBOX") or ".stream." in subject, (user, subject)
            assert not subject.startswith("_INBOX.") and subject != ">", (user, subject)


def test_the_principal_finder_finds_the_chat_job_and_not_a_file_reference() -> None:
    found = principal_subjects()
    assert subjects.CHAT_STREAM.subject in found  # CompletionJob.principal
    assert subjects.RETRIEVAL_QUERY.subject in found
    assert subjects.VECTORS_UPSERT.subject not in found
    assert subjects.AUTH_JWT_PARAMS.subject not in found


@pytest.mark.parametrize("user", USERS)
def test_only_the_gateway_may_send_a_message_that_asserts_a_principal(user: str) -> None:
    """Services act on the principal a message carries; only the gateway, which checked the
    caller's JWT or API key, may put one on the bus."""
    publish = set(permissions_for(user).publish)
    for subject in principal_subjects():
        assert (subject in publish) == (user == GATEWAY), (user, subject)


@pytest.mark.parametrize("endpoint", [subjects.AUTH_JWT_PARAMS, subjects.AUTH_KEY_RESOLVE])
def test_only_auth_may_answer_what_the_gateway_trusts_blindly(endpoint: Endpoint[Any, Any]) -> None:
    """Whoever could subscribe there could hand the gateway a JWT secret or a principal."""
    assert [u for u in USERS if endpoint.subject in permissions_for(u).subscribe] == ["auth"]
    assert [u for u in USERS if endpoint.subject in permissions_for(u).publish] == [GATEWAY]


def test_jetstream_access_names_only_the_services_own_buckets_with_its_prefix() -> None:
    auth = permissions_for(subjects.AUTH_SERVICE, "tenant")
    assert "$KV.tenant_users.>" in auth.publish
    assert "$JS.API.*.*.KV_tenant_users" in auth.publish
    assert not any("files" in p or "blobs" in p or "ragway_" in p for p in auth.publish)
    assert not any(p in ("$JS.API.>", "$KV.>", "$O.>") for p in auth.publish)
    proxy = permissions_for(subjects.INFERENCE_SERVICE, "tenant")
    assert not any("KV_tenant_users" in p or "$KV.tenant_users" in p for p in proxy.publish)
    assert set(JETSTREAM_USE) == set(SERVICES)


def test_the_operator_pings_calls_what_no_service_calls_and_asks_if_jetstream_answers() -> None:
    table = permissions_for(OPERATOR)
    pings = [p for p in table.publish if p.startswith("$SRV.PING.")]
    assert len(pings) == len(subjects.BACKEND_SERVICES)
    assert set(table.publish) - set(pings) == {subjects.VECTORS_STORED.subject, "$JS.API.INFO"}
    assert table.subscribe == ("_INBOX_operator.>",)
    assert not table.allow_responses


def test_an_unknown_user_has_no_table() -> None:
    with pytest.raises(ValueError, match="no NATS user"):
        permissions_for("plugin")


def _pub(user: str) -> tuple[str, ...]:
    return permissions_for(user).publish


def test_only_the_launcher_and_the_gateways_health_check_may_ping_the_backend_services() -> None:
    ping = subjects.ping_subject(subjects.AUTH_SERVICE)
    assert [u for u in (*SERVICES, OPERATOR) if ping in _pub(u)] == [GATEWAY, OPERATOR]


def test_the_gateway_writes_the_usage_ledger_of_its_own_prefix_and_nobody_else_does() -> None:
    writers = [s for s in SERVICES if "tenant.usage.*" in permissions_for(s, "tenant").publish]
    assert writers == [GATEWAY]
    assert "$JS.API.*.*.tenant_usage" in permissions_for(GATEWAY, "tenant").publish


def test_only_the_gateway_asks_for_stats_and_metrics_and_each_service_hears_its_own() -> None:
    for user in SERVICES:
        table = permissions_for(user)
        assert f"ragway.metrics.{user}" in table.subscribe
        assert not any(s.startswith("ragway.metrics.") and s != f"ragway.metrics.{user}"
                       for s in table.subscribe)  # fmt: skip
    askers = [u for u in USERS if "$SRV.STATS.auth" in permissions_for(u).publish]
    assert askers == [GATEWAY]
