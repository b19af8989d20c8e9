"""Signing up and in, the first admin, and managing users over the bus."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from nats.aio.client import Client

from auth.errors import BAD_CREDENTIALS
from auth.settings import Settings
from common.bus import Bus
from common.errors import RagwayError
from contracts import subjects
from contracts.auth import (
    Ok,
    Session,
    SigninRequest,
    UpdateRoleRequest,
    UserRef,
    UsersListRequest,
)
from tests.auth.support import PASSWORD, Events, call, fast_settings, running, signup


async def test_the_first_user_becomes_admin_and_later_ones_get_the_default_role(
    auth: object, bus: Bus
) -> None:
    first = await signup(bus, "first@example.com")
    second = await signup(bus, "second@example.com")
    assert (first.role, second.role) == ("admin", "user")
    assert first.token and first.token_type == "Bearer"
    assert first.id != second.id


async def test_the_default_role_for_later_users_is_configurable(nats_url: str, bus: Bus) -> None:
    async with running(fast_settings(nats_url, default_user_role="pending"), bus):
        assert (await signup(bus, "boss@example.com")).role == "admin"
        assert (await signup(bus, "newcomer@example.com")).role == "pending"


async def test_concurrent_first_signups_make_exactly_one_admin(auth: object, bus: Bus) -> None:
    sessions = await asyncio.gather(*(signup(bus, f"racer{i}@example.com") for i in range(8)))
    roles = sorted(session.role for session in sessions)
    assert roles == ["admin"] + ["user"] * 7


async def test_an_email_registers_once_whatever_its_case(auth: object, bus: Bus) -> None:
    session = await signup(bus, "Grace@Example.com")
    assert session.email == "grace@example.com"
    with pytest.raises(RagwayError) as exc:
        await signup(bus, "  GRACE@example.COM ")
    assert exc.value.code == "conflict"

    racers = await asyncio.gather(
        *(signup(bus, "twin@example.com") for _ in range(5)), return_exceptions=True
    )
    assert sum(isinstance(r, Session) for r in racers) == 1
    assert all(r.code == "conflict" for r in racers if isinstance(r, RagwayError))


@pytest.mark.parametrize(
    ("name", "email", "password", "message"),
    [
        ("  ", "a@example.com", PASSWORD, "Name is required"),
        ("A", "not-an-email", PASSWORD, "Invalid email format"),
        ("A", "a@b", PASSWORD, "Invalid email format"),
        ("A", "a@example.com", "short", "Password must be at least 8 characters"),
        ("A" * 300, "a@example.com", PASSWORD, "Name must be at most 255 characters"),
    ],
)
async def test_signup_rejects_bad_input_with_a_clear_message(
    auth: object, bus: Bus, name: str, email: str, password: str, message: str
) -> None:
    with pytest.raises(RagwayError) as exc:
        await signup(bus, email, name=name, password=password)
    assert (exc.value.code, exc.value.detail) == ("invalid", message)


async def test_signin_returns_a_session_for_the_right_password_in_any_email_case(
    auth: object, bus: Bus
) -> None:
    created = await signup(bus, "lin@example.com", name="Lin")
    session = await call(
        bus, subjects.AUTH_SIGNIN, SigninRequest(email="LIN@example.com", password=PASSWORD)
    )
    assert (session.id, session.email, session.name, session.role) == (
        created.id,
        "lin@example.com",
        "Lin",
        "admin",
    )


async def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(
    auth: object, bus: Bus
) -> None:
    await signup(bus, "known@example.com")
    answers = []
    for email in ("known@example.com", "nobody@example.com"):
        with pytest.raises(RagwayError) as exc:
            await call(bus, subjects.AUTH_SIGNIN, SigninRequest(email=email, password="wrong-pass"))
        answers.append((exc.value.code, exc.value.detail))
    assert answers == [("unauthorized", BAD_CREDENTIALS)] * 2


async def test_users_are_fetched_by_id_and_listed_oldest_first(auth: object, bus: Bus) -> None:
    sessions = [await signup(bus, f"u{i}@example.com", name=f"U{i}") for i in range(3)]
    user = await call(bus, subjects.AUTH_USER_GET, UserRef(user_id=sessions[1].id))
    assert (user.email, user.name, user.role) == ("u1@example.com", "U1", "user")
    assert user.id == sessions[1].id

    listed = await call(bus, subjects.AUTH_USERS_LIST, UsersListRequest())
    assert [u.id for u in listed.users] == [s.id for s in sessions]
    assert [u.created_at for u in listed.users] == sorted(u.created_at for u in listed.users)

    with pytest.raises(RagwayError) as exc:
        await call(bus, subjects.AUTH_USER_GET, UserRef(user_id="no-such-user"))
    assert exc.value.code == "not_found"


async def test_a_role_change_is_stored_and_announced(
    auth: object, bus: Bus, events: Events
) -> None:
    await signup(bus, "admin@example.com")
    member = await signup(bus, "member@example.com")
    updated = await call(
        bus, subjects.AUTH_USER_UPDATE_ROLE, UpdateRoleRequest(user_id=member.id, role="admin")
    )
    assert updated.role == "admin"
    assert (await call(bus, subjects.AUTH_USER_GET, UserRef(user_id=member.id))).role == "admin"
    event = await events.next()
    assert (event.kind, event.user_id) == ("user_updated", member.id)

    with pytest.raises(RagwayError) as exc:
        await call(
            bus, subjects.AUTH_USER_UPDATE_ROLE, UpdateRoleRequest(user_id="ghost", role="user")
        )
    assert exc.value.code == "not_found"


async def test_deleting_a_user_announces_it_and_frees_the_email(
    auth: object, bus: Bus, events: Events
) -> None:
    await signup(bus, "admin@example.com")
    leaver = await signup(bus, "leaver@example.com")
    assert await call(bus, subjects.AUTH_USER_DELETE, UserRef(user_id=leaver.id)) == Ok()
    event = await events.next()
    assert (event.kind, event.user_id) == ("user_deleted", leaver.id)

    with pytest.raises(RagwayError) as gone:
        await call(bus, subjects.AUTH_USER_GET, UserRef(user_id=leaver.id))
    assert gone.value.code == "not_found"
    with pytest.raises(RagwayError) as signin:
        await call(
            bus, subjects.AUTH_SIGNIN, SigninRequest(email="leaver@example.com", password=PASSWORD)
        )
    assert signin.value.code == "unauthorized"
    with pytest.raises(RagwayError) as again:
        await call(bus, subjects.AUTH_USER_DELETE, UserRef(user_id=leaver.id))
    assert again.value.code == "not_found"

    returning = await signup(bus, "leaver@example.com")
    assert returning.id != leaver.id and returning.role == "user"
    listed = await call(bus, subjects.AUTH_USERS_LIST, UsersListRequest())
    assert leaver.id not in {u.id for u in listed.users}


async def test_a_malformed_request_is_invalid(auth: object, bus: Bus) -> None:
    with pytest.raises(RagwayError) as exc:
        await bus.call_raw(subjects.AUTH_SIGNUP, b'{"email": 1}', timeout=5)
    assert exc.value.code == "invalid"


async def test_a_stored_hash_is_upgraded_when_the_cost_settings_go_up(
    settings: Settings, bus: Bus, nc: Client
) -> None:
    async with running(settings, bus):
        user = await signup(bus, "ada@example.com")
    stronger = msgspec.structs.replace(settings, password_time_cost=2)
    signin = SigninRequest(email="ada@example.com", password=PASSWORD)
    async with running(stronger, bus):
        await call(bus, subjects.AUTH_SIGNIN, signin)
        users = await nc.jetstream().key_value(f"{settings.bucket_prefix}_users")
        entry = await users.get(user.id)
        assert b"$argon2id$v=19$m=1024,t=2,p=1$" in (entry.value or b"")
        assert (await call(bus, subjects.AUTH_SIGNIN, signin)).id == user.id
