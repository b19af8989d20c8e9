"""Knowledge collections: named sets of files, shared through access grants."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from contracts.access import AccessControl, Grant
from contracts.auth import Principal
from contracts.files import FileRecord
from contracts.filters import MetadataFilter


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
    """Collections the principal may read (or write), newest first; `limit` None: all."""

    principal: Principal
    permission: Literal["read", "write"] = "read"
    skip: int = 0
    limit: int | None = None


class KnowledgeList(msgspec.Struct, kw_only=True):
    items: list[KnowledgeReply]
    total: int = 0


class KnowledgeFilesQuery(msgspec.Struct, frozen=True, kw_only=True):
    """One page of a collection's files, newest first; `query` filters names (any case),
    `filter` their upload metadata."""

    principal: Principal
    knowledge_id: str
    query: str | None = None
    skip: int = 0
    limit: int = 30
    filter: MetadataFilter | None = None


class KnowledgeFileList(msgspec.Struct, kw_only=True):
    """Open WebUI's KnowledgeFileListResponse."""

    items: list[FileRecord]
    total: int


class FileIdForm(msgspec.Struct, kw_only=True):
    """HTTP body of file/add and file/remove."""

    file_id: str


class KnowledgeFilesBatch(msgspec.Struct, frozen=True, kw_only=True):
    """Add many files to a collection at once; each file gets its own outcome."""

    principal: Principal
    knowledge_id: str
    file_ids: list[str]


class FileOutcome(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`added`, `unchanged` (already in the collection) or `failed` with the reason."""

    file_id: str
    status: Literal["added", "unchanged", "failed"]
    error: str | None = None


class BatchWarnings(msgspec.Struct, kw_only=True):
    """Open WebUI's `warnings` on a batch add some of whose files failed."""

    message: str
    errors: list[str]


class KnowledgeBatchReply(KnowledgeReply, kw_only=True):
    """The collection after a batch add, with every file's outcome."""

    results: list[FileOutcome] = []
    warnings: BatchWarnings | None = None


class ManifestEntry(msgspec.Struct, kw_only=True):
    """One local file of Open WebUI's sync manifest; `checksum` is its bytes' SHA-256."""

    filename: str
    path: str = ""
    checksum: str
    size: int = 0


class SyncDiffForm(msgspec.Struct, kw_only=True):
    """HTTP body of `/{id}/sync/diff`."""

    manifest: list[ManifestEntry]


class SyncDiffRequest(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    knowledge_id: str
    manifest: list[ManifestEntry]


class SyncAdded(msgspec.Struct, kw_only=True):
    filename: str
    path: str


class SyncModified(msgspec.Struct, kw_only=True):
    filename: str
    path: str
    stale_file_id: str


class SyncDeleted(msgspec.Struct, kw_only=True):
    file_id: str
    filename: str


class SyncDiffReply(msgspec.Struct, kw_only=True):
    """Open WebUI's SyncDiffResponse. ragway has no directories: `mkdir`, `rmdir` and
    `directory_map` stay empty, and `path` is matched against the `path` an upload's
    metadata carried (empty when it carried none)."""

    added: list[SyncAdded]
    modified: list[SyncModified]
    deleted: list[SyncDeleted]
    mkdir: list[str] = []
    rmdir: list[str] = []
    unmodified_count: int
    directory_map: dict[str, str] = {}


class SyncCleanupForm(msgspec.Struct, kw_only=True):
    """HTTP body of `/{id}/sync/cleanup`: files to drop (and directory ids, ignored)."""

    file_ids: list[str]
    dir_ids: list[str] = []


class SyncCleanupRequest(msgspec.Struct, frozen=True, kw_only=True):
    principal: Principal
    knowledge_id: str
    file_ids: list[str]


class StatusReply(msgspec.Struct, kw_only=True):
    status: bool = True
