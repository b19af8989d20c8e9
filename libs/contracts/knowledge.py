"""Knowledge collections: named sets of files with Open WebUI's access_control."""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.auth import Principal
from contracts.files import FileRecord


class AccessGrant(msgspec.Struct, kw_only=True):
    group_ids: list[str] = []
    user_ids: list[str] = []


class AccessControl(msgspec.Struct, kw_only=True):
    """`null` (None) = every user may read; `{}` = private; grants name users."""

    read: AccessGrant | None = None
    write: AccessGrant | None = None


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
    access_control: AccessControl | None = None
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
    created_at: int
    updated_at: int
    files: list[FileRecord] = []
    write_access: bool = False


class KnowledgeForm(msgspec.Struct, kw_only=True):
    """HTTP body of create/update."""

    name: str
    description: str = ""
    access_control: AccessControl | None = None
    data: dict[str, Any] | None = None


class KnowledgeCreate(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    form: KnowledgeForm


class KnowledgeUpdate(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    knowledge_id: str
    form: KnowledgeForm


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
