"""API keys: shown once, stored as hashes, one per user, revocations announced."""

from __future__ import annotations

import hashlib
import re

import pytest

from common.bus import Bus
from common.errors import RagwayError
from contracts import subjects
from contracts.auth import KeyResolveRequest, Ok, Principal, UserRef
from tests.auth.support import Events, call, signup


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def resolve(bus: Bus, key: str) -> Principal:
    return await call(bus, subjects.AUTH_KEY_RESOLVE, KeyResolveRequest(key_hash=sha256(key)))


async def assert_unresolvable(bus: Bus, key: str) -> None:
    with pytest.raises(RagwayError) as exc:
        await resolve(bus, key)
    assert exc.value.code == "unauthorized"


async def test_a_key_is_shown_once_then_masked_and_resolves_to_its_user(
    auth: object, bus: Bus
) -> None:
    user = await signup(bus, "ada@example.com", name="Ada")
    ref = UserRef(user_id=user.id)
    key = (await call(bus, subjects.AUTH_KEY_CREATE, ref)).api_key
    assert re.fullmatch(r"sk-[0-9a-f]{32}", key)

    hint = (await call(bus, subjects.AUTH_KEY_GET, ref)).api_key
    assert hint == f"{key[:7]}...{key[-4:]}"

    principal = await resolve(bus, key)
    assert principal == Principal(id=user.id, email="ada@example.com", name="Ada", role="admin")


async def test_a_new_key_replaces_the_old_one_at_once(
    auth: object, bus: Bus, events: Events
) -> None:
    user = await signup(bus, "ada@example.com")
    ref = UserRef(user_id=user.id)
    old = (await call(bus, subjects.AUTH_KEY_CREATE, ref)).api_key
    new = (await call(bus, subjects.AUTH_KEY_CREATE, ref)).api_key
    assert new != old
    event = await events.next()
    assert (event.kind, event.user_id, event.key_hash) == ("key_revoked", user.id, sha256(old))
    await assert_unresolvable(bus, old)
    assert (await resolve(bus, new)).id == user.id


async def test_a_deleted_key_stops_resolving_and_is_announced(
    auth: object, bus: Bus, events: Events
) -> None:
    user = await signup(bus, "ada@example.com")
    ref = UserRef(user_id=user.id)
    key = (await call(bus, subjects.AUTH_KEY_CREATE, ref)).api_key
    assert await call(bus, subjects.AUTH_KEY_DELETE, ref) == Ok()
    event = await events.next()
    assert (event.kind, event.key_hash) == ("key_revoked", sha256(key))
    await assert_unresolvable(bus, key)

    with pytest.raises(RagwayError) as exc:
        await call(bus, subjects.AUTH_KEY_GET, ref)
    assert exc.value.code == "not_found"
    with pytest.raises(RagwayError) as exc:
        await call(bus, subjects.AUTH_KEY_DELETE, ref)
    assert exc.value.code == "not_found"


async def test_deleting_a_user_kills_their_key(auth: object, bus: Bus) -> None:
    await signup(bus, "admin@example.com")
    user = await signup(bus, "ada@example.com")
    key = (await call(bus, subjects.AUTH_KEY_CREATE, UserRef(user_id=user.id))).api_key
    await call(bus, subjects.AUTH_USER_DELETE, UserRef(user_id=user.id))
    await assert_unresolvable(bus, key)


async def test_unknown_and_malformed_keys_do_not_resolve(auth: object, bus: Bus) -> None:
    await assert_unresolvable(bus, "sk-" + "0" * 32)
    with pytest.raises(RagwayError) as exc:
        await call(bus, subjects.AUTH_KEY_RESOLVE, KeyResolveRequest(key_hash="../x y"))
    assert exc.value.code == "unauthorized"


async def test_a_key_for_an_unknown_user_is_not_created(auth: object, bus: Bus) -> None:
    with pytest.raises(RagwayError) as exc:
        await call(bus, subjects.AUTH_KEY_CREATE, UserRef(user_id="ghost"))
    assert exc.value.code == "not_found"
