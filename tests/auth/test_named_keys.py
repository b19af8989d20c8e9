"""Named API keys: several per user, the secret once, scopes carried on the principal,
expiry, and a revocation that resolves nowhere afterwards and is announced."""

from __future__ import annotations

import re
import time

import pytest

from common.bus import Bus
from common.errors import RagwayError
from contracts import subjects
from contracts.auth import (
    KeyGrant,
    NamedKeyCreate,
    NamedKeyCreated,
    NamedKeyForm,
    NamedKeyRef,
    NamedKeysRequest,
    Ok,
    UserRef,
)
from tests.auth.support import Events, call, signup
from tests.auth.test_api_keys import assert_unresolvable, resolve, sha256


async def create(bus: Bus, user_id: str, **form: object) -> NamedKeyCreated:
    message = NamedKeyCreate(user_id=user_id, form=NamedKeyForm(**form))  # type: ignore[arg-type]
    return await call(bus, subjects.AUTH_NAMED_KEY_CREATE, message)


async def test_named_keys_resolve_with_their_scope_and_list_without_secrets(
    auth: object, bus: Bus
) -> None:
    user = await signup(bus, "ada@example.com", name="Ada")
    wide = await create(bus, user.id, name="laptop")
    narrow = await create(bus, user.id, name="ci", models=["m1", "m1", "m2"], collections=["c1"])
    assert re.fullmatch(r"sk-[0-9a-f]{32}", narrow.api_key)
    assert narrow.models == ["m1", "m2"]  # duplicates dropped, order kept

    principal = await resolve(bus, narrow.api_key)
    assert (principal.id, principal.email, principal.role) == (user.id, "ada@example.com", "admin")
    assert principal.key == KeyGrant(id=narrow.id, models=("m1", "m2"), collections=("c1",))
    assert principal.key.scoped
    unscoped = await resolve(bus, wide.api_key)
    assert unscoped.key == KeyGrant(id=wide.id)
    assert not unscoped.key.scoped

    listed = await call(bus, subjects.AUTH_NAMED_KEYS_LIST, NamedKeysRequest(user_id=user.id))
    assert [k.name for k in listed.keys] == ["laptop", "ci"]
    assert listed.keys[1].key_hint == f"{narrow.api_key[:7]}...{narrow.api_key[-4:]}"
    assert narrow.api_key not in repr(listed)
    other = await signup(bus, "bob@example.com")
    theirs = await call(bus, subjects.AUTH_NAMED_KEYS_LIST, NamedKeysRequest(user_id=other.id))
    assert theirs.keys == []


async def test_a_deleted_named_key_stops_at_once_and_is_announced(
    auth: object, bus: Bus, events: Events
) -> None:
    user = await signup(bus, "ada@example.com")
    kept = await create(bus, user.id, name="kept")
    gone = await create(bus, user.id, name="gone")
    ref = NamedKeyRef(user_id=user.id, key_id=gone.id)
    assert await call(bus, subjects.AUTH_NAMED_KEY_DELETE, ref) == Ok()
    event = await events.next()
    assert (event.kind, event.user_id, event.key_hash) == (
        "key_revoked",
        user.id,
        sha256(gone.api_key),
    )
    await assert_unresolvable(bus, gone.api_key)
    assert (await resolve(bus, kept.api_key)).key == KeyGrant(id=kept.id)
    with pytest.raises(RagwayError) as exc:
        await call(bus, subjects.AUTH_NAMED_KEY_DELETE, ref)
    assert exc.value.code == "not_found"


async def test_a_user_cannot_delete_another_users_named_key(auth: object, bus: Bus) -> None:
    owner = await signup(bus, "ada@example.com")
    other = await signup(bus, "bob@example.com")
    key = await create(bus, owner.id, name="mine")
    with pytest.raises(RagwayError) as exc:
        await call(
            bus,
            subjects.AUTH_NAMED_KEY_DELETE,
            NamedKeyRef(user_id=other.id, key_id=key.id),
        )
    assert exc.value.code == "not_found"
    assert (await resolve(bus, key.api_key)).id == owner.id


async def test_an_expired_named_key_is_refused_and_a_past_expiry_is_invalid(
    auth: object, bus: Bus
) -> None:
    user = await signup(bus, "ada@example.com")
    with pytest.raises(RagwayError) as exc:
        await create(bus, user.id, name="old", expires_at=int(time.time()) - 1)
    assert exc.value.code == "invalid"
    soon = await create(bus, user.id, name="soon", expires_at=int(time.time()) + 1)
    assert (await resolve(bus, soon.api_key)).key is not None
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            await resolve(bus, soon.api_key)
        except RagwayError as error:
            assert (error.code, error.detail) == ("unauthorized", "API key expired")
            break
        await _pause()
    else:
        raise AssertionError("the key never expired")


async def test_a_deleted_users_named_keys_resolve_nowhere(auth: object, bus: Bus) -> None:
    await signup(bus, "admin@example.com")
    user = await signup(bus, "ada@example.com")
    key = await create(bus, user.id, name="k")
    assert (await resolve(bus, key.api_key)).id == user.id  # it worked until the deletion
    await call(bus, subjects.AUTH_USER_DELETE, UserRef(user_id=user.id))
    await assert_unresolvable(bus, key.api_key)


async def test_named_keys_need_a_name_and_a_known_user(auth: object, bus: Bus) -> None:
    user = await signup(bus, "ada@example.com")
    for user_id, name in ((user.id, "   "), ("ghost", "k")):
        with pytest.raises(RagwayError) as exc:
            await create(bus, user_id, name=name)
        assert exc.value.code in ("invalid", "not_found")


async def _pause() -> None:
    import asyncio

    await asyncio.sleep(0.1)
