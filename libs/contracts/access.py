"""Who may read or write a shared object (collection, preset, tool, function model).

Open WebUI 0.12's `access_grants`, a list of `{principal_type, principal_id, permission}`
(`principal_id` "*" with "user" means every user), and the older `access_control`
object (`null` public, `{}` private, `{"read": {"user_ids", "group_ids"}, "write": ...}`).
Forms accept either; replies carry both. The rules live in `common.access`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

PrincipalType = Literal["user", "group"]
Permission = Literal["read", "write"]
EVERYONE = "*"


class Grant(msgspec.Struct, frozen=True, kw_only=True):
    principal_type: PrincipalType
    principal_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    permission: Permission


class AccessIds(msgspec.Struct, kw_only=True):
    group_ids: list[str] = []
    user_ids: list[str] = []


class AccessControl(msgspec.Struct, kw_only=True):
    """The legacy object. `None` in its place (JSON `null`) means every user may read."""

    read: AccessIds | None = None
    write: AccessIds | None = None


PUBLIC_READ = Grant(principal_type="user", principal_id=EVERYONE, permission="read")
