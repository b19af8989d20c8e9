"""Knowledge collection endpoints: create, list, get, update, add/remove files, reset, delete.

Removing a file from a collection leaves the file alone, and deleting a collection deletes
only the collection: the files stay, their owners still have them (and their vectors).
Reading a collection you may not read is `not_found` (its existence is not revealed);
changing one you may read but not write is `forbidden`.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable

import structlog
from msgspec import UNSET

from common import access
from common.errors import RagwayError, invalid
from contracts.access import Grant
from contracts.auth import Ok, Principal
from contracts.knowledge import (
    Knowledge,
    KnowledgeAccessUpdate,
    KnowledgeCreate,
    KnowledgeData,
    KnowledgeFileChange,
    KnowledgeForm,
    KnowledgeList,
    KnowledgeListRequest,
    KnowledgeRef,
    KnowledgeReply,
    KnowledgeUpdate,
)
from retrieval.access import can_read_file, can_read_knowledge, can_write_knowledge, grants_of
from retrieval.errors import file_failed, file_not_found, knowledge_not_found, knowledge_read_only
from retrieval.knowledge_store import KnowledgeStore, now
from retrieval.known_files import KnownFiles
from retrieval.memberships import Memberships

log = structlog.get_logger()

MAX_NAME_LENGTH = 256
# A collection holding more files than this is answered without their records (`files`
# absent, `file_count` says how many): they come a page at a time from `/{id}/files`,
# and no reply, nor a change already made, fails on the bus's message limit (1 MB by
# default; 1,000 records are ~0.5 MB).
MAX_FILES_IN_REPLY = 1_000


def _checked_name(form: KnowledgeForm) -> str:
    name = form.name.strip()
    if not name:
        raise invalid("A knowledge name is required")
    if len(name) > MAX_NAME_LENGTH:
        raise invalid(f"A knowledge name has at most {MAX_NAME_LENGTH} characters")
    return name


def _with_grants(knowledge: Knowledge, grants: list[Grant]) -> Knowledge:
    """Grants stored with the legacy object they mean, for instances that predate grants."""
    knowledge.access_grants = grants
    knowledge.access_control = access.control_from_grants(grants)
    return knowledge


class KnowledgeHandlers:
    """The endpoints, over the collection store and the file catalog."""

    def __init__(self, store: KnowledgeStore, files: KnownFiles, memberships: Memberships) -> None:
        self._store = store
        self._files = files
        self._memberships = memberships  # the chunks' `collections` payload follows changes

    async def reply(
        self, principal: Principal, knowledge: Knowledge, with_files: bool = True
    ) -> KnowledgeReply:
        """The collection as clients see it, with the records of its (still existing)
        files when asked for (a listing's items and internal checks go without)."""
        file_ids = knowledge.data.file_ids
        with_files = with_files and len(file_ids) <= MAX_FILES_IN_REPLY
        records = await self._files.listing(file_ids) if with_files else UNSET
        return KnowledgeReply(
            id=knowledge.id,
            user_id=knowledge.user_id,
            name=knowledge.name,
            description=knowledge.description,
            data=knowledge.data,
            meta=knowledge.meta,
            access_control=access.control_from_grants(grants_of(knowledge)),
            access_grants=grants_of(knowledge),
            created_at=knowledge.created_at,
            updated_at=knowledge.updated_at,
            files=records,
            file_count=len(file_ids),
            write_access=can_write_knowledge(principal, knowledge),
        )

    async def readable(self, principal: Principal, knowledge_id: str) -> Knowledge:
        knowledge = await self._store.get(knowledge_id)
        if knowledge is None or not can_read_knowledge(principal, knowledge):
            raise knowledge_not_found(knowledge_id)
        return knowledge

    async def writable(self, principal: Principal, knowledge_id: str) -> Knowledge:
        knowledge = await self.readable(principal, knowledge_id)
        if not can_write_knowledge(principal, knowledge):
            raise knowledge_read_only(knowledge_id)
        return knowledge

    async def create(self, request: KnowledgeCreate) -> KnowledgeReply:
        principal = request.principal
        if principal.role == "pending":
            raise RagwayError("forbidden", "Your account is pending approval")
        stamp = now()
        form = request.form
        requested = access.requested_grants(form.access_grants, form.access_control)
        knowledge = Knowledge(
            id=str(uuid.uuid4()),
            user_id=principal.id,
            name=_checked_name(form),
            description=form.description,
            data=KnowledgeData(),
            created_at=stamp,
            updated_at=stamp,
        )
        # absent means private (Open WebUI 0.9+), never public
        _with_grants(knowledge, [] if requested is UNSET else requested)
        await self._store.create(knowledge)
        log.info("knowledge_created", knowledge_id=knowledge.id, user_id=principal.id)
        return await self.reply(principal, knowledge)

    async def list(self, request: KnowledgeListRequest) -> KnowledgeList:
        principal = request.principal
        allowed = can_write_knowledge if request.permission == "write" else can_read_knowledge
        visible = [k for k in await self._candidates(principal) if allowed(principal, k)]
        visible.sort(key=lambda k: (k.updated_at, k.id), reverse=True)
        stop = None if request.limit is None else request.skip + request.limit
        chosen = visible[request.skip : stop]
        return KnowledgeList(
            items=[await self.reply(principal, k, with_files=False) for k in chosen],
            total=len(visible),
        )

    async def _candidates(self, principal: Principal) -> builtins.list[Knowledge]:
        """The collections `principal` might see: the mirror's candidates while it follows
        the bucket (their own, granted to them, their groups or everyone), else every
        collection read from the bucket."""
        if self._memberships.live:
            return self._memberships.candidates(principal)
        return await self._store.list_all()

    async def get(self, request: KnowledgeRef) -> KnowledgeReply:
        knowledge = await self.readable(request.principal, request.knowledge_id)
        return await self.reply(request.principal, knowledge, request.with_files)

    async def update(self, request: KnowledgeUpdate) -> KnowledgeReply:
        """Name and description; grants only when asked for (absent: unchanged)."""
        await self.writable(request.principal, request.knowledge_id)
        form = request.form
        name = _checked_name(form)
        requested = access.requested_grants(form.access_grants, form.access_control)

        def change(current: Knowledge) -> Knowledge:
            grants = access.changed_grants(
                request.principal, current.user_id, grants_of(current), requested
            )
            current.name = name
            current.description = form.description
            return _with_grants(current, grants)

        return await self.store_change(request.principal, request.knowledge_id, change)

    async def update_access(self, request: KnowledgeAccessUpdate) -> KnowledgeReply:
        """Only who has access (Open WebUI 0.12's `/{id}/access/update`)."""
        await self.writable(request.principal, request.knowledge_id)
        requested = access.requested_grants(request.form.access_grants, request.form.access_control)
        if requested is UNSET:
            raise invalid("access_grants (or access_control) is required")

        def change(current: Knowledge) -> Knowledge:
            grants = access.changed_grants(
                request.principal, current.user_id, grants_of(current), requested
            )
            return _with_grants(current, grants)

        return await self.store_change(request.principal, request.knowledge_id, change)

    async def add_file(self, request: KnowledgeFileChange) -> KnowledgeReply:
        """Link a file the caller may read; one still being ingested joins search when done."""
        await self.writable(request.principal, request.knowledge_id)
        record = await self._files.get(request.file_id)
        if record is None or not can_read_file(request.principal, record):
            raise file_not_found(request.file_id)
        if record.data.status == "failed":
            raise file_failed(record.meta.name, record.id, record.data.error)

        def change(current: Knowledge) -> Knowledge | None:
            if request.file_id in current.data.file_ids:
                return None  # already linked: adding twice changes nothing
            current.data.file_ids = [*current.data.file_ids, request.file_id]
            return current

        return await self.store_change(
            request.principal, request.knowledge_id, change, request.with_files
        )

    async def remove_file(self, request: KnowledgeFileChange) -> KnowledgeReply:
        """Unlink a file from the collection; the file itself stays."""
        knowledge = await self.writable(request.principal, request.knowledge_id)
        if request.file_id not in knowledge.data.file_ids:
            raise file_not_found(request.file_id)

        def change(current: Knowledge) -> Knowledge | None:
            if request.file_id not in current.data.file_ids:
                return None
            current.data.file_ids = [f for f in current.data.file_ids if f != request.file_id]
            return current

        return await self.store_change(
            request.principal, request.knowledge_id, change, request.with_files
        )

    async def reset(self, request: KnowledgeRef) -> KnowledgeReply:
        """Unlink every file (the files stay)."""
        await self.writable(request.principal, request.knowledge_id)

        def change(current: Knowledge) -> Knowledge:
            current.data.file_ids = []
            return current

        return await self.store_change(request.principal, request.knowledge_id, change)

    async def delete(self, request: KnowledgeRef) -> Ok:
        """Delete the collection only: its files and their vectors belong to their owners."""
        await self.writable(request.principal, request.knowledge_id)
        await self._store.delete(request.knowledge_id)
        await self._memberships.changed(None, request.knowledge_id)
        log.info("knowledge_deleted", knowledge_id=request.knowledge_id)
        return Ok()

    async def delete_owned_by(self, user_id: str) -> int:
        """Delete every collection `user_id` owns; returns how many there were."""
        owned = [k for k in await self._store.list_all() if k.user_id == user_id]
        # (a rare purge: the bucket, not the mirror, so none is missed while it lags)
        for knowledge in owned:
            await self._store.delete(knowledge.id)
            log.info("knowledge_deleted", knowledge_id=knowledge.id, reason="owner_deleted")
        return len(owned)

    async def forget_file(self, file_id: str) -> int:
        """Unlink a deleted file from every collection; returns how many collections changed."""
        changed = 0
        for knowledge in await self._holding(file_id):

            def change(current: Knowledge) -> Knowledge | None:
                if file_id not in current.data.file_ids:
                    return None
                current.data.file_ids = [f for f in current.data.file_ids if f != file_id]
                return current

            updated = await self._store.update(knowledge.id, change)
            await self._memberships.changed(updated, knowledge.id)
            changed += 1
        return changed

    async def _holding(self, file_id: str) -> builtins.list[Knowledge]:
        """The collections that hold `file_id`: the mirror's (per file, no scan) while it
        follows the bucket, else read from the bucket."""
        if self._memberships.live:
            found = (self._memberships.get(k) for k in self._memberships.collections_of(file_id))
            return [knowledge for knowledge in found if knowledge is not None]
        return [k for k in await self._store.list_all() if file_id in k.data.file_ids]

    async def held_anywhere(self, file_ids: set[str]) -> set[str]:
        """Which of `file_ids` some collection holds."""
        if self._memberships.live:
            return {f for f in file_ids if self._memberships.collections_of(f)}
        return {f for k in await self._store.list_all() for f in k.data.file_ids} & file_ids

    async def store_change(
        self,
        principal: Principal,
        knowledge_id: str,
        change: Callable[[Knowledge], Knowledge | None],
        with_files: bool = True,
    ) -> KnowledgeReply:
        updated = await self._store.update(knowledge_id, change)
        await self._memberships.changed(updated, knowledge_id)
        if updated is None:
            raise knowledge_not_found(knowledge_id)
        return await self.reply(principal, updated, with_files)
