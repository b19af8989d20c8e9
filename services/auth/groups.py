"""Groups: created and changed by admins, read by admins and their members.

Membership lives on the user records (`UserRecord.group_ids`), so the principal a
gateway builds for a request carries its groups with no extra read, and a membership
change is one compare-and-set per user followed by the `user_updated` event that makes
every gateway drop that user's cached principal at once (as a role change does).
Groups themselves are records in `<prefix>_groups`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import msgspec
from structlog.typing import FilteringBoundLogger

from auth.store import UserRecord, UserStore, now
from catalog.buckets import Bucket
from common.bus import Bus
from common.errors import RagwayError, forbidden, invalid, not_found
from common.service import ServiceHost
from contracts import subjects
from contracts.auth import AuthEvent, Ok, Principal
from contracts.groups import (
    Group,
    GroupCreate,
    GroupForm,
    GroupList,
    GroupListRequest,
    GroupMembersChange,
    GroupRecord,
    GroupRef,
    GroupUpdate,
)

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(GroupRecord).decode
BUSY = "The group changed concurrently; try again"


def _require_admin(principal: Principal) -> None:
    if principal.role != "admin":
        raise forbidden("Only administrators may manage groups")


def _checked_name(form: GroupForm) -> str:
    name = form.name.strip()
    if not name:
        raise invalid("A group name is required")
    return name


def _group_not_found(group_id: str) -> RagwayError:
    return not_found(f"Group '{group_id}' not found")


class GroupHandlers:
    """The AUTH_GROUP* endpoints."""

    def __init__(
        self, groups: Bucket, users: UserStore, bus: Bus, log: FilteringBoundLogger
    ) -> None:
        self._groups = groups
        self._users = users
        self._bus = bus
        self._log = log

    async def serve(self, host: ServiceHost) -> None:
        """Answer every group endpoint on `host`."""
        await host.serve(subjects.AUTH_GROUPS_LIST, self.list_groups)
        await host.serve(subjects.AUTH_GROUP_CREATE, self.create)
        await host.serve(subjects.AUTH_GROUP_GET, self.get)
        await host.serve(subjects.AUTH_GROUP_UPDATE, self.update)
        await host.serve(subjects.AUTH_GROUP_USERS_ADD, self.add_users)
        await host.serve(subjects.AUTH_GROUP_USERS_REMOVE, self.remove_users)
        await host.serve(subjects.AUTH_GROUP_DELETE, self.delete)

    # --- reads -----------------------------------------------------------------------

    async def list_groups(self, request: GroupListRequest) -> GroupList:
        """Every group for admins; the groups they are a member of for everyone else."""
        records = [_decode(value) for value in (await self._groups.latest()).values()]
        members = await self._members()
        principal = request.principal
        if principal.role != "admin":
            records = [r for r in records if principal.id in members.get(r.id, ())]
        records.sort(key=lambda r: (r.created_at, r.id))
        return GroupList(items=[_reply(r, members.get(r.id, [])) for r in records])

    async def get(self, request: GroupRef) -> Group:
        record = await self._record(request.group_id)
        members = (await self._members()).get(request.group_id, [])
        principal = request.principal
        if record is None or (principal.role != "admin" and principal.id not in members):
            raise _group_not_found(request.group_id)
        return _reply(record, members)

    # --- writes (admins) -------------------------------------------------------------

    async def create(self, request: GroupCreate) -> Group:
        _require_admin(request.principal)
        form, stamp = request.form, now()
        record = GroupRecord(
            id=str(uuid.uuid4()),
            user_id=request.principal.id,
            name=_checked_name(form),
            description=form.description,
            permissions=form.permissions,
            data=form.data,
            meta=form.meta,
            created_at=stamp,
            updated_at=stamp,
        )
        await self._groups.kv.create(record.id, _encode(record))
        self._log.info("group_created", group_id=record.id)
        return _reply(record, [])

    async def update(self, request: GroupUpdate) -> Group:
        _require_admin(request.principal)
        form = request.form
        name = _checked_name(form)

        def change(current: GroupRecord) -> GroupRecord:
            return msgspec.structs.replace(
                current,
                name=name,
                description=form.description,
                permissions=form.permissions
                if form.permissions is not None
                else current.permissions,
                data=form.data if form.data is not None else current.data,
                meta=form.meta if form.meta is not None else current.meta,
                updated_at=now(),
            )

        changed = (
            await self._groups.update(
                request.group_id, _decode, change, RagwayError("conflict", BUSY)
            )
            if _valid(request.group_id)
            else None
        )
        if changed is None:
            raise _group_not_found(request.group_id)
        members = (await self._members()).get(request.group_id, [])
        return _reply(changed[1], members)

    async def add_users(self, request: GroupMembersChange) -> Group:
        _require_admin(request.principal)
        group_id = request.group_id
        if await self._record(group_id) is None:
            raise _group_not_found(group_id)
        user_ids = list(dict.fromkeys(request.user_ids))
        unknown = [u for u in user_ids if await self._users.get(u) is None]
        if unknown:
            raise invalid(f"Unknown user ids: {', '.join(unknown[:20])}")
        changed = await self._change_members(user_ids, lambda ids: (*ids, group_id))
        # A delete racing this add purges the group, then strips it from its members: if
        # it looked before we wrote, we see the group gone now and take it back ourselves.
        if await self._record(group_id) is None:
            await self._change_members(changed, lambda ids: _without(ids, group_id))
            raise _group_not_found(group_id)
        self._log.info("group_users_added", group_id=group_id, added=len(changed))
        return await self.get(GroupRef(principal=request.principal, group_id=group_id))

    async def remove_users(self, request: GroupMembersChange) -> Group:
        _require_admin(request.principal)
        group_id = request.group_id
        if await self._record(group_id) is None:
            raise _group_not_found(group_id)
        user_ids = list(dict.fromkeys(request.user_ids))
        changed = await self._change_members(user_ids, lambda ids: _without(ids, group_id))
        self._log.info("group_users_removed", group_id=group_id, removed=len(changed))
        return await self.get(GroupRef(principal=request.principal, group_id=group_id))

    async def delete(self, request: GroupRef) -> Ok:
        _require_admin(request.principal)
        group_id = request.group_id
        if await self._record(group_id) is None:
            raise _group_not_found(group_id)
        await self._groups.purge(group_id)
        members = (await self._members()).get(group_id, [])
        await self._change_members(members, lambda ids: _without(ids, group_id))
        self._log.info("group_deleted", group_id=group_id, members=len(members))
        return Ok()

    # --- helpers ---------------------------------------------------------------------

    async def _record(self, group_id: str) -> GroupRecord | None:
        if not _valid(group_id):
            return None
        value = await self._groups.get(group_id)
        return None if value is None else _decode(value)

    async def _members(self) -> dict[str, list[str]]:
        """group id -> member user ids, from one pass over the users."""
        members: dict[str, list[str]] = {}
        for record in await self._users.all():
            for group_id in record.group_ids:
                members.setdefault(group_id, []).append(record.id)
        return members

    async def _change_members(
        self, user_ids: list[str], edit: Callable[[tuple[str, ...]], tuple[str, ...]]
    ) -> list[str]:
        """Apply `edit` to each user's group ids; tell every gateway about each user whose
        groups changed (before returning, so the next request sees the new membership)."""
        changed: list[str] = []
        for user_id in user_ids:

            def update(record: UserRecord) -> UserRecord:
                groups = tuple(dict.fromkeys(edit(record.group_ids)))
                if groups == record.group_ids:
                    return record
                return msgspec.structs.replace(record, group_ids=groups, updated_at=now())

            try:
                before, after = await self._users.change(user_id, update)
            except RagwayError as exc:
                if exc.code == "not_found":
                    continue  # deleted meanwhile: nothing to change
                raise
            if before.group_ids != after.group_ids:
                changed.append(user_id)
                await self._bus.publish(
                    subjects.AUTH_EVENTS, AuthEvent(kind="user_updated", user_id=user_id)
                )
        return changed


def _valid(group_id: str) -> bool:
    return (
        bool(group_id) and len(group_id) <= 128 and all(c.isalnum() or c in "-_" for c in group_id)
    )


def _without(group_ids: tuple[str, ...], group_id: str) -> tuple[str, ...]:
    return tuple(g for g in group_ids if g != group_id)


def _reply(record: GroupRecord, members: list[str]) -> Group:
    fields = {name: getattr(record, name) for name in GroupRecord.__struct_fields__}
    return Group(**fields, user_ids=sorted(members), member_count=len(members))
