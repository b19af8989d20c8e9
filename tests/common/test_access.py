"""The access rules (`common.access`) on their own: legacy conversion, grants, changes."""

from __future__ import annotations

import msgspec
import pytest
from msgspec import UNSET

from common import access
from common.errors import RagwayError
from contracts.access import PUBLIC_READ, AccessControl, AccessIds, Grant
from contracts.auth import Principal, Role


def who(user_id: str, role: Role = "user", groups: tuple[str, ...] = ()) -> Principal:
    return Principal(id=user_id, email=f"{user_id}@x", name=user_id, role=role, group_ids=groups)


def grant(kind: str, principal_id: str, permission: str) -> Grant:
    return msgspec.convert(
        {"principal_type": kind, "principal_id": principal_id, "permission": permission}, Grant
    )


def test_legacy_null_is_public_read_and_empty_is_private() -> None:
    assert access.grants_from_control(None) == [PUBLIC_READ]
    assert access.grants_from_control(AccessControl()) == []
    control = AccessControl(
        read=AccessIds(user_ids=["u1"], group_ids=["g1"]), write=AccessIds(user_ids=["u2"])
    )
    assert set(access.grants_from_control(control)) == {
        grant("user", "u1", "read"),
        grant("group", "g1", "read"),
        grant("user", "u2", "write"),
    }
    assert access.control_from_grants(access.grants_from_control(control)) == control
    assert access.control_from_grants([PUBLIC_READ]) is None


def test_a_form_without_grants_asks_for_nothing_and_access_grants_win_over_the_legacy_object() -> (
    None
):
    assert access.requested_grants(UNSET, UNSET) is UNSET
    assert access.requested_grants(None, UNSET) == []
    assert access.requested_grants(UNSET, None) == [PUBLIC_READ]
    assert access.requested_grants([], None) == []
    doubled = [grant("user", "u1", "read"), grant("user", "u1", "read")]
    assert access.requested_grants(doubled, UNSET) == [grant("user", "u1", "read")]


def test_owner_admin_user_group_and_everyone_grants() -> None:
    grants = [grant("user", "reader", "read"), grant("group", "team", "write")]
    assert access.can_write(who("owner"), "owner", [])
    assert access.can_write(who("root", "admin"), "owner", [])
    assert access.can_read(who("reader"), "owner", grants)
    assert not access.can_write(who("reader"), "owner", grants)
    assert access.can_write(who("member", groups=("other", "team")), "owner", grants)
    assert access.can_read(who("member", groups=("team",)), "owner", grants)
    assert not access.can_read(who("stranger", groups=("other",)), "owner", grants)
    assert access.can_read(who("anyone"), "owner", [PUBLIC_READ])
    assert not access.can_write(who("anyone"), "owner", [PUBLIC_READ])
    # a pending account reaches only what it owns, whatever the grants say
    assert not access.can_read(who("reader", "pending"), "owner", [PUBLIC_READ, *grants])


def test_only_the_owner_or_an_admin_changes_grants() -> None:
    current = [grant("group", "team", "write")]
    writer = who("member", groups=("team",))
    assert access.changed_grants(writer, "owner", current, UNSET) == current
    assert access.changed_grants(writer, "owner", current, list(current)) == current
    with pytest.raises(RagwayError) as refused:
        access.changed_grants(writer, "owner", current, [PUBLIC_READ])
    assert refused.value.code == "forbidden"
    assert access.changed_grants(who("owner"), "owner", current, []) == []
    assert access.changed_grants(who("root", "admin"), "owner", current, []) == []


@pytest.mark.parametrize(
    "bad", [grant("user", "*", "write"), grant("group", "*", "read")], ids=["write", "group"]
)
def test_every_user_may_only_be_granted_read(bad: Grant) -> None:
    with pytest.raises(RagwayError) as refused:
        access.normalized([bad])
    assert refused.value.code == "invalid"
