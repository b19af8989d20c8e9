"""Knowledge collections: named sets of files, shared through access grants."""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from contracts.access import AccessControl, Grant
from contracts.auth import Principal
from contracts.files import FileRecord


class KnowledgeData(msgspec.Struct, kw_only=True):
    file_ids: list[str] = []


class Knowledge(msgspec.Struct, kw_only=True):
    """The stored collection. `files` in replies is filled from file records."""

    id: str
    user_id: str
    name: str
    description: str = ""
    data: KnowledgeData = msgspec.field(default_factory=KnowledgeData)
    meta: dict[str, Any] | None = None
    # kept in step with `access_grants` (derived from them) for instances that predate them
    access_control: AccessControl | None = None
    # None: stored before grants existed (`access_control` says what it means); the
    # retrieval service migrates such records when it starts
    access_grants: list[Grant] | None = None
    created_at: int
    updated_at: int


class KnowledgeReply(msgspec.Struct, kw_only=True):
    id: str
    user_id: str
    name: str
    description: str
    data: KnowledgeData
    meta: dict[str, Any] | None
    access_control: AccessControl | None
    access_grants: list[Grant]
    created_at: int
    updated_at: int
    files: list[FileRecord] = []
    write_access: bool = False


class KnowledgeForm(msgspec.Struct, kw_only=True):
    """HTTP body of create/update. Grants absent: private on create, unchanged on update."""

    name: str
    description: str = ""
    access_grants: list[Grant] | UnsetType | None = UNSET
    access_control: AccessControl | UnsetType | None = UNSET
    data: dict[str, Any] | None = None


class AccessForm(msgspec.Struct, kw_only=True):
    """HTTP body of `/{id}/access/update` (Open WebUI 0.12): only who has access."""

    access_grants: list[Grant] | UnsetType | None = UNSET
    access_control: AccessControl | UnsetType | None = UNSET


class KnowledgeCreate(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    form: KnowledgeForm


class KnowledgeUpdate(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    knowledge_id: str
    form: KnowledgeForm


class KnowledgeAccessUpdate(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    knowledge_id: str
    form: AccessForm


class KnowledgeRef(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    knowledge_id: str


class KnowledgeFileChange(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    knowledge_id: str
    file_id: str


class KnowledgeListRequest(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal


class KnowledgeList(msgspec.Struct, kw_only=True):
    items: list[KnowledgeReply]


class FileIdForm(msgspec.Struct, kw_only=True):
    """HTTP body of file/add and file/remove."""

    file_id: str
