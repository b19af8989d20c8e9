"""Groups over the bus: admins manage them, members read theirs, membership reaches the
principal (and every gateway, through `user_updated` events)."""

from __future__ import annotations

import msgspec
import pytest

from common.bus import Bus
from common.errors import RagwayError
from contracts import subjects
from contracts.auth import Ok, Principal, Session, UserRef
from contracts.groups import (
    Group,
    GroupCreate,
    GroupForm,
    GroupListRequest,
    GroupMembersChange,
    GroupRef,
    GroupUpdate,
)
from tests.auth.support import Events, call, signup


def as_principal(session: Session) -> Principal:
    return Principal(id=session.id, email=session.email, name=session.name, role=session.role)


async def create_group(bus: Bus, admin: Principal, name: str = "Editors") -> Group:
    form = GroupForm(name=name, description="people who edit")
    return await call(bus, subjects.AUTH_GROUP_CREATE, GroupCreate(principal=admin, form=form))


async def members(bus: Bus, admin: Principal, group_id: str, subject: str, *ids: str) -> Group:
    change = GroupMembersChange(principal=admin, group_id=group_id, user_ids=list(ids))
    return await call(bus, subject, change)


async def principal_of(bus: Bus, user_id: str) -> Principal:
    return await call(bus, subjects.AUTH_USER_GET, UserRef(user_id=user_id))


async def refused(bus: Bus, subject: str, message: object) -> str:
    with pytest.raises(RagwayError) as exc:
        await call(bus, subject, message)
    return exc.value.code


async def test_membership_reaches_the_principal_and_each_change_is_announced(
    auth: object, bus: Bus, events: Events
) -> None:
    admin = as_principal(await signup(bus, "admin@example.com"))
    ada = await signup(bus, "ada@example.com")
    bob = await signup(bus, "bob@example.com")
    group = await create_group(bus, admin)
    assert (group.member_count, group.user_ids, group.name) == (0, [], "Editors")

    added = await members(bus, admin, group.id, subjects.AUTH_GROUP_USERS_ADD, ada.id, bob.id)
    assert (added.member_count, added.user_ids) == (2, sorted([ada.id, bob.id]))
    announced = {(await events.next()).user_id for _ in range(2)}
    assert announced == {ada.id, bob.id}
    assert (await principal_of(bus, ada.id)).group_ids == (group.id,)

    # adding again changes nothing and announces nothing
    await members(bus, admin, group.id, subjects.AUTH_GROUP_USERS_ADD, ada.id)
    removed = await members(bus, admin, group.id, subjects.AUTH_GROUP_USERS_REMOVE, ada.id)
    assert removed.user_ids == [bob.id]
    event = await events.next()
    assert (event.kind, event.user_id) == ("user_updated", ada.id)
    assert (await principal_of(bus, ada.id)).group_ids == ()

    ref = GroupRef(principal=admin, group_id=group.id)
    assert await call(bus, subjects.AUTH_GROUP_DELETE, ref) == Ok()
    event = await events.next()
    assert (event.kind, event.user_id) == ("user_updated", bob.id)
    assert (await principal_of(bus, bob.id)).group_ids == ()
    assert await refused(bus, subjects.AUTH_GROUP_GET, ref) == "not_found"


async def test_members_read_their_groups_only_and_only_admins_change_them(
    auth: object, bus: Bus
) -> None:
    admin = as_principal(await signup(bus, "root@example.com"))
    ada = await signup(bus, "ada2@example.com")
    bob = as_principal(await signup(bus, "bob2@example.com"))
    mine = await create_group(bus, admin, "Ada's")
    other = await create_group(bus, admin, "Others")
    await members(bus, admin, mine.id, subjects.AUTH_GROUP_USERS_ADD, ada.id)
    ada_now = await principal_of(bus, ada.id)

    listed = await call(bus, subjects.AUTH_GROUPS_LIST, GroupListRequest(principal=ada_now))
    assert [g.id for g in listed.items] == [mine.id]
    everything = await call(bus, subjects.AUTH_GROUPS_LIST, GroupListRequest(principal=admin))
    assert {mine.id, other.id} <= {g.id for g in everything.items}
    seen = await call(bus, subjects.AUTH_GROUP_GET, GroupRef(principal=ada_now, group_id=mine.id))
    assert seen.user_ids == [ada.id]
    assert (
        await refused(bus, subjects.AUTH_GROUP_GET, GroupRef(principal=ada_now, group_id=other.id))
        == "not_found"
    )

    form = GroupForm(name="Taken")
    for message, subject in (
        (GroupCreate(principal=bob, form=form), subjects.AUTH_GROUP_CREATE),
        (GroupUpdate(principal=ada_now, group_id=mine.id, form=form), subjects.AUTH_GROUP_UPDATE),
        (
            GroupMembersChange(principal=bob, group_id=mine.id, user_ids=[bob.id]),
            subjects.AUTH_GROUP_USERS_ADD,
        ),
        (GroupRef(principal=ada_now, group_id=mine.id), subjects.AUTH_GROUP_DELETE),
    ):
        assert await refused(bus, subject, message) == "forbidden"
    renamed = await call(
        bus,
        subjects.AUTH_GROUP_UPDATE,
        GroupUpdate(principal=admin, group_id=mine.id, form=GroupForm(name="  Renamed ")),
    )
    assert (renamed.name, renamed.user_ids) == ("Renamed", [ada.id])


async def test_bad_group_requests_name_what_is_wrong(auth: object, bus: Bus) -> None:
    admin = as_principal(await signup(bus, "boss@example.com"))
    group = await create_group(bus, admin)
    unknown = GroupMembersChange(principal=admin, group_id=group.id, user_ids=["nobody-1"])
    with pytest.raises(RagwayError) as exc:
        await call(bus, subjects.AUTH_GROUP_USERS_ADD, unknown)
    assert exc.value.code == "invalid" and "nobody-1" in exc.value.detail
    missing = GroupMembersChange(principal=admin, group_id="no-such-group", user_ids=[])
    assert await refused(bus, subjects.AUTH_GROUP_USERS_ADD, missing) == "not_found"
    blank = GroupCreate(principal=admin, form=GroupForm(name="   "))
    assert await refused(bus, subjects.AUTH_GROUP_CREATE, blank) == "invalid"
    assert msgspec.structs.asdict(group)["member_count"] == 0
