"""Who may read and write what: Open WebUI's `access_control` semantics, in one place.

`access_control is None` (JSON `null`): every user may read; the owner and admins write.
`AccessControl()` (JSON `{}`): private to the owner and admins.
Grants name users (`user_ids`) per permission; a writer may also read. Groups are not
modelled in ragway yet, so `group_ids` grant nothing.
"""

from __future__ import annotations

from contracts.auth import Principal
from contracts.files import FileRecord
from contracts.knowledge import AccessGrant, Knowledge


def _granted(grant: AccessGrant | None, user_id: str) -> bool:
    return grant is not None and user_id in grant.user_ids


def _privileged(principal: Principal, owner_id: str) -> bool:
    return principal.role == "admin" or principal.id == owner_id


def can_write_knowledge(principal: Principal, knowledge: Knowledge) -> bool:
    if _privileged(principal, knowledge.user_id):
        return True
    access = knowledge.access_control
    return access is not None and _granted(access.write, principal.id)


def can_read_knowledge(principal: Principal, knowledge: Knowledge) -> bool:
    if principal.role == "pending":
        return principal.id == knowledge.user_id
    access = knowledge.access_control
    if access is None or _privileged(principal, knowledge.user_id):
        return True
    return _granted(access.read, principal.id) or _granted(access.write, principal.id)


def can_read_file(principal: Principal, record: FileRecord) -> bool:
    """A file on its own (outside any collection) is its owner's and the admins'."""
    return _privileged(principal, record.user_id)
