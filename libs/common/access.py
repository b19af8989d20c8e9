"""The access rules for shared objects, in one place (types in `contracts.access`).

- The owner and admins read and write; nobody else does without a grant.
- A grant names a user, a group the caller is a member of (`Principal.group_ids`), or
  every user (`"user"`, `"*"`); `write` implies `read`.
- A `pending` user reaches only what it owns.
- Only the owner or an admin changes grants; a write grantee may change everything else.
- Legacy `access_control`: `null` is public read, `{}` private (Open WebUI's conversion).
"""

from __future__ import annotations

from collections.abc import Iterable

from msgspec import UNSET, UnsetType

from common.errors import forbidden, invalid
from contracts.access import EVERYONE, PUBLIC_READ, AccessControl, AccessIds, Grant, Permission
from contracts.auth import Principal

MAX_GRANTS = 1000


def grants_from_control(control: AccessControl | None) -> list[Grant]:
    """The grants the legacy object means: `None` public read, `{}` nothing."""
    if control is None:
        return [PUBLIC_READ]
    grants: list[Grant] = []
    sides: tuple[tuple[Permission, AccessIds | None], ...] = (
        ("read", control.read),
        ("write", control.write),
    )
    for permission, ids in sides:
        if ids is None:
            continue
        grants.extend(
            Grant(principal_type="group", principal_id=group_id, permission=permission)
            for group_id in ids.group_ids
        )
        grants.extend(
            Grant(principal_type="user", principal_id=user_id, permission=permission)
            for user_id in ids.user_ids
        )
    return normalized(grants)


def control_from_grants(grants: Iterable[Grant]) -> AccessControl | None:
    """The legacy object for replies: `None` when every user may read, else the named ids."""
    grants = list(grants)
    if PUBLIC_READ in grants:
        return None
    control = AccessControl(read=AccessIds(), write=AccessIds())
    for grant in grants:
        ids = control.read if grant.permission == "read" else control.write
        assert ids is not None
        (ids.group_ids if grant.principal_type == "group" else ids.user_ids).append(
            grant.principal_id
        )
    return control


def normalized(grants: Iterable[Grant]) -> list[Grant]:
    """Deduplicated, in a stable order; `invalid` for grants that make no sense."""
    unique: dict[tuple[str, str, str], Grant] = {}
    for grant in grants:
        if grant.principal_id == EVERYONE:
            if grant.principal_type != "user":
                raise invalid("'*' (every user) is a principal of type 'user', not 'group'")
            if grant.permission != "read":
                raise invalid("Every user ('*') may be granted read, not write")
        unique[(grant.principal_type, grant.principal_id, grant.permission)] = grant
    if len(unique) > MAX_GRANTS:
        raise invalid(f"At most {MAX_GRANTS} access grants")
    return [unique[key] for key in sorted(unique)]


def requested_grants(
    access_grants: list[Grant] | UnsetType | None,
    access_control: AccessControl | UnsetType | None,
) -> list[Grant] | UnsetType:
    """What a form asks for: `access_grants` when present (`null`: none), else the legacy
    `access_control` when present (`null`: public), else UNSET (create: private;
    update: unchanged)."""
    if access_grants is not UNSET:
        return normalized(access_grants or [])
    if access_control is not UNSET:
        return grants_from_control(access_control)
    return UNSET


def stored_grants(
    access_grants: list[Grant] | None, access_control: AccessControl | None
) -> list[Grant]:
    """A record's grants: its own list, or (a record written before grants existed, not
    migrated yet) what its legacy object meant then."""
    if access_grants is not None:
        return access_grants
    return grants_from_control(access_control)


def privileged(principal: Principal, owner_id: str) -> bool:
    """The owner or an admin: reads, writes and changes grants."""
    return principal.role == "admin" or principal.id == owner_id


def _granted(principal: Principal, grants: Iterable[Grant], permissions: set[Permission]) -> bool:
    for grant in grants:
        if grant.permission not in permissions:
            continue
        if grant.principal_type == "user":
            if grant.principal_id in (EVERYONE, principal.id):
                return True
        elif grant.principal_id in principal.group_ids:
            return True
    return False


def can_read(principal: Principal, owner_id: str, grants: Iterable[Grant]) -> bool:
    if principal.role == "pending":
        return principal.id == owner_id
    return privileged(principal, owner_id) or _granted(principal, grants, {"read", "write"})


def can_write(principal: Principal, owner_id: str, grants: Iterable[Grant]) -> bool:
    if principal.role == "pending":
        return principal.id == owner_id
    return privileged(principal, owner_id) or _granted(principal, grants, {"write"})


def changed_grants(
    principal: Principal,
    owner_id: str,
    current: list[Grant],
    requested: list[Grant] | UnsetType,
) -> list[Grant]:
    """The grants after an update: unchanged when none were asked for or they are the same;
    `forbidden` when someone other than the owner or an admin asks to change them."""
    if requested is UNSET or set(requested) == set(current):
        return current
    if not privileged(principal, owner_id):
        raise forbidden("Only the owner or an administrator may change who has access")
    return requested
