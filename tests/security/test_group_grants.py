"""Groups over HTTP: a grant to a group reaches its members, and a membership change
reaches every gateway on the member's very next request (the second gateway caches
principals for 10 minutes, so only auth's events can make it notice)."""

from __future__ import annotations

import pytest

from tests.support.stack import Account, RagServices, Stack

pytestmark = pytest.mark.security


async def group_with(stack: Stack, admin: Account, *members: Account) -> dict[str, object]:
    status, group = await stack.call(
        "POST",
        "/api/v1/groups/create",
        headers=admin.key_auth,
        json={"name": "Readers", "description": "may read the handbook"},
    )
    assert status == 200, group
    status, group = await stack.call(
        "POST",
        f"/api/v1/groups/id/{group['id']}/users/add",
        headers=admin.key_auth,
        json={"user_ids": [m.id for m in members]},
    )
    assert status == 200 and group["member_count"] == len(members), group
    return dict(group)


async def test_a_group_grant_reaches_members_and_leaving_the_group_ends_it_on_every_gateway(
    stack: Stack, second: Stack, rag: RagServices, admin: Account
) -> None:
    owner = await stack.with_key(await stack.signup())
    member = await stack.with_key(await stack.signup())
    outsider = await stack.with_key(await stack.signup())
    group = await group_with(stack, admin, member)
    status, knowledge = await stack.call(
        "POST",
        "/api/v1/knowledge/create",
        headers=owner.key_auth,
        json={
            "name": "Team handbook",
            "access_grants": [
                {"principal_type": "group", "principal_id": group["id"], "permission": "read"}
            ],
        },
    )
    assert status == 200, knowledge
    path = f"/api/v1/knowledge/{knowledge['id']}"
    for gateway in (stack, second):
        assert (await gateway.call("GET", path, headers=member.key_auth))[0] == 200
        assert (await gateway.call("GET", path, headers=outsider.key_auth))[0] == 404
    status, mine = await second.call("GET", "/api/v1/groups/", headers=member.key_auth)
    assert status == 200 and [g["id"] for g in mine] == [group["id"]]
    status, theirs = await second.call("GET", "/api/v1/groups/", headers=outsider.key_auth)
    assert (status, theirs) == (200, [])
    one = f"/api/v1/groups/id/{group['id']}"
    assert (await second.call("GET", one, headers=member.key_auth))[0] == 200
    assert (await second.call("GET", one, headers=outsider.key_auth))[0] == 404

    status, _ = await stack.call(
        "POST", f"{one}/users/remove", headers=admin.key_auth, json={"user_ids": [member.id]}
    )
    assert status == 200
    assert (await second.call("GET", path, headers=member.key_auth))[0] == 404
    assert (await second.call("GET", one, headers=member.key_auth))[0] == 404

    status, _ = await stack.call(
        "POST", f"{one}/users/add", headers=admin.key_auth, json={"user_ids": [outsider.id]}
    )
    assert status == 200
    assert (await second.call("GET", path, headers=outsider.key_auth))[0] == 200
    status, deleted = await stack.call("DELETE", f"{one}/delete", headers=admin.key_auth)
    assert (status, deleted) == (200, True)
    assert (await second.call("GET", path, headers=outsider.key_auth))[0] == 404


async def test_groups_are_managed_by_admins_only(stack: Stack, admin: Account) -> None:
    user = await stack.with_key(await stack.signup())
    group = await group_with(stack, admin, user)
    one = f"/api/v1/groups/id/{group['id']}"
    for method, path, body in (
        ("POST", "/api/v1/groups/create", {"name": "mine"}),
        ("POST", f"{one}/update", {"name": "renamed"}),
        ("POST", f"{one}/users/add", {"user_ids": [user.id]}),
        ("POST", f"{one}/users/remove", {"user_ids": [user.id]}),
        ("DELETE", f"{one}/delete", None),
    ):
        status, reply = await stack.call(method, path, headers=user.key_auth, json=body)
        assert status == 403, (path, reply)
    status, seen = await stack.call("GET", one, headers=user.key_auth)
    assert (status, seen["name"], seen["user_ids"]) == (200, "Readers", [user.id])
    status, reply = await stack.call(
        "POST", f"{one}/users/add", headers=admin.key_auth, json={"user_ids": ["nobody"]}
    )
    assert status == 400 and "nobody" in reply["detail"]
