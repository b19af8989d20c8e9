"""Groups of users, owned by the auth service (membership is about users): shapes as in
Open WebUI 0.12.4's `/api/v1/groups` routes. A grant to a group reaches its members
through `Principal.group_ids`."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from contracts.auth import Principal

GroupName = Annotated[str, msgspec.Meta(max_length=256)]


class GroupForm(msgspec.Struct, kw_only=True):
    """HTTP body of create and update."""

    name: GroupName
    description: Annotated[str, msgspec.Meta(max_length=10_000)] = ""
    permissions: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None


class UserIdsForm(msgspec.Struct, kw_only=True):
    """HTTP body of `users/add` and `users/remove`."""

    user_ids: Annotated[list[str], msgspec.Meta(max_length=10_000)] = []


class GroupRecord(msgspec.Struct, kw_only=True):
    """A group as stored. Members are not listed here: each user's record names its
    groups, so the principal built for a request carries them in one read."""

    id: str
    user_id: str  # who created it
    name: str
    description: str = ""
    permissions: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    created_at: int
    updated_at: int


class Group(GroupRecord, kw_only=True):
    """A group as clients see it: Open WebUI's GroupResponse (`member_count`) plus the
    member ids that 0.6 clients read (`user_ids`)."""

    user_ids: list[str] = []
    member_count: int = 0


class GroupCreate(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    form: GroupForm


class GroupUpdate(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    group_id: str
    form: GroupForm


class GroupRef(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    group_id: str


class GroupMembersChange(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    group_id: str
    user_ids: list[str]


class GroupListRequest(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal


class GroupList(msgspec.Struct, frozen=True, kw_only=True):
    items: list[Group]
