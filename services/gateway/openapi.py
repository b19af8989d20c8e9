"""The OpenAPI document, generated from the routes the app serves and the msgspec types
that validate their bodies (`msgspec.json.schema_components`), never written by hand.

`ROUTE_DOCS` says, per aiohttp route name, what each route takes and returns; paths,
methods and who may call come from the router and the access table themselves, so a
route can never be served without appearing here (undocumented ones are marked so, and
a test keeps that list empty).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

from contracts.auth import (
    AddUserRequest,
    ApiKeyReply,
    NamedKey,
    NamedKeyCreated,
    NamedKeyForm,
    Session,
    SigninRequest,
    SignupRequest,
    User,
)
from contracts.chat import ChatCompletionRequest
from contracts.chats import ChatForm, ChatRecord, ChatSearchHit, ChatSummary
from contracts.embeddings import EmbeddingsReply, EmbeddingsRequest
from contracts.files import FileRecord, FileStatusReply
from contracts.functions import FunctionInfo, PluginForm, ToolInfo
from contracts.groups import Group, GroupForm, UserIdsForm
from contracts.knowledge import (
    AccessForm,
    FileIdForm,
    KnowledgeBatchReply,
    KnowledgeFileList,
    KnowledgeForm,
    KnowledgeReply,
    StatusReply,
    SyncCleanupForm,
    SyncDiffForm,
    SyncDiffReply,
)
from contracts.models import ModelsReply
from contracts.presets import PresetAccessForm, PresetForm, PresetIdForm, PresetList, PresetReply
from gateway.limits import Limit, LimitForm
from gateway.routes_auth import PasswordForm, RoleForm
from gateway.routes_config import ConfigReply, VersionReply
from gateway.routes_console import ConsoleUser
from gateway.routes_file_edits import ContentForm, ContentReply, ProcessTextForm, ProcessTextReply
from gateway.routes_ingest import CancelForm, FailedPage, RetryAllForm, RetryAllReply
from gateway.routes_retrieval import (
    EmbeddingConfigReply,
    QueryCollectionForm,
    QueryDocForm,
    QueryReply,
)
from gateway.state import ACCESS

UNDOCUMENTED = "(undocumented)"
JSON = "application/json"


class ErrorReply(msgspec.Struct):
    detail: str


class UploadForm(msgspec.Struct):
    """multipart/form-data: the file, and optional JSON metadata (`knowledge_id` links the
    file to that collection; `?process_in_background=false` answers once processed)."""

    file: bytes
    metadata: str | None = None


class CurrentUser(msgspec.Struct):
    """`GET /api/v1/auths/`: who the credential belongs to (no timestamps)."""

    id: str
    email: str
    name: str
    role: str
    profile_image_url: str


class SignoutReply(msgspec.Struct):
    status: bool


class UsersReply(msgspec.Struct):
    users: list[User]
    total: int


class UsageReply(msgspec.Struct):
    """Rows keyed by the `group_by` field (`user`, `key`, `model`, `day` or `backend`:
    `openai/0`, `ollama/1`, `` for answers no backend gave) with
    requests, errors, prompt_tokens, completion_tokens, total_tokens."""

    rows: list[dict[str, Any]]
    from_: float = msgspec.field(name="from")
    to: float
    group_by: str


class FilePage(msgspec.Struct):
    """`?page=N`: one page of files and how many there are."""

    items: list[FileRecord]
    total: int


class KnowledgePage(msgspec.Struct):
    """`?page=N`: one page of collections and how many there are."""

    items: list[KnowledgeReply]
    total: int


class HealthReply(msgspec.Struct):
    status: bool
    services: dict[str, Any]


@dataclass(frozen=True)
class RouteDoc:
    summary: str
    tag: str
    request: Any = None  # a msgspec-understood type, validated on the way in
    response: Any = None  # None: a free-form JSON object
    request_media: str = JSON
    response_media: str = JSON


def _crud(tag: str, info: Any, plural: str) -> dict[str, RouteDoc]:
    return {
        f"{plural}_create": RouteDoc(f"Install a {tag} (admin)", tag, PluginForm, info),
        f"{plural}_list": RouteDoc(f"List {plural}", tag, None, list[info]),
        f"{plural}_list_bare": RouteDoc(f"List {plural}", tag, None, list[info]),
        f"{plural}_get": RouteDoc(f"One {tag} with its source", tag, None, info),
        f"{plural}_update": RouteDoc(f"Replace a {tag} (admin)", tag, PluginForm, info),
        f"{plural}_delete": RouteDoc(f"Delete a {tag} (admin)", tag, None, bool),
        f"{plural}_valves": RouteDoc(f"A {tag}'s valve values (admin)", tag, None, dict[str, Any]),
        f"{plural}_valves_spec": RouteDoc(
            f"A {tag}'s Valves JSON schema, with RAGWAY_ALLOW_NETWORK (admin)",
            tag,
            None,
            dict[str, Any],
        ),
        f"{plural}_valves_update": RouteDoc(
            f"Set a {tag}'s valves, checked by its Valves class (admin)",
            tag,
            dict[str, Any],
            dict[str, Any],
        ),
    }


ROUTE_DOCS: dict[str, RouteDoc] = {
    "health": RouteDoc("Liveness and backend services", "health", None, HealthReply),
    "metrics": RouteDoc(
        "Prometheus metrics of the stack (a bearer token if RAGWAY_METRICS_TOKEN is set)",
        "operations",
        response=str,
        response_media="text/plain",
    ),
    "api_version": RouteDoc("The Open WebUI API version served", "config", None, VersionReply),
    "api_config": RouteDoc("Public configuration and features", "config", None, ConfigReply),
    "signup": RouteDoc("Create an account (the first is admin)", "auths", SignupRequest, Session),
    "signin": RouteDoc("Sign in with email and password", "auths", SigninRequest, Session),
    "current_user": RouteDoc("The signed-in user", "auths", None, CurrentUser),
    "update_password": RouteDoc(
        "Change the password; ends every earlier session", "auths", PasswordForm, bool
    ),
    "signout": RouteDoc("End every session (JWT) of the caller", "auths", None, SignoutReply),
    "signout_post": RouteDoc("End every session (JWT) of the caller", "auths", None, SignoutReply),
    "add_user": RouteDoc("Add a user (admin)", "auths", AddUserRequest, Session),
    "create_api_key": RouteDoc("Create (replace) the API key", "auths", None, ApiKeyReply),
    "get_api_key": RouteDoc("The current API key", "auths", None, ApiKeyReply),
    "delete_api_key": RouteDoc("Revoke the API key", "auths", None, bool),
    "create_named_key": RouteDoc(
        "Create a named, optionally scoped API key (the secret is shown once)",
        "auths",
        NamedKeyForm,
        NamedKeyCreated,
    ),
    "list_named_keys": RouteDoc("The caller's named API keys", "auths", None, list[NamedKey]),
    "delete_named_key": RouteDoc("Revoke a named API key", "auths", None, bool),
    "limits_set": RouteDoc("Set a limit or budget (admin)", "limits", LimitForm, Limit),
    "limits_list": RouteDoc("Every limit (admin)", "limits", None, list[Limit]),
    "limits_delete": RouteDoc("Remove a limit (admin)", "limits", None, bool),
    "usage": RouteDoc(
        "Usage from the ledger (`from`, `to`, `group_by`; admins: everyone's)",
        "usage",
        None,
        UsageReply,
    ),
    "list_users": RouteDoc("All users (admin)", "users", None, UsersReply),
    "update_user": RouteDoc("Change a user's role (admin)", "users", RoleForm, User),
    "delete_user": RouteDoc("Delete a user (admin)", "users", None, bool),
    "api_models": RouteDoc("Models of every backend", "models", None, ModelsReply),
    "api_v1_models": RouteDoc("Models of every backend", "models", None, ModelsReply),
    "api_chat": RouteDoc(
        "OpenAI chat completion (SSE when `stream`)", "chat", ChatCompletionRequest
    ),
    "api_v1_chat": RouteDoc(
        "OpenAI chat completion (SSE when `stream`)", "chat", ChatCompletionRequest
    ),
    "api_embeddings": RouteDoc(
        "OpenAI embeddings (ragway's own model or a backend's)",
        "embeddings",
        EmbeddingsRequest,
        EmbeddingsReply,
    ),
    "api_v1_embeddings": RouteDoc(
        "OpenAI embeddings (ragway's own model or a backend's)",
        "embeddings",
        EmbeddingsRequest,
        EmbeddingsReply,
    ),
    "chats_new": RouteDoc("Create a chat", "chats", ChatForm, ChatRecord),
    "chats_list": RouteDoc(
        "The caller's chats, newest first (`?page=`)", "chats", None, list[ChatSummary]
    ),
    "chats_list_bare": RouteDoc(
        "The caller's chats, newest first", "chats", None, list[ChatSummary]
    ),
    "chats_list_alias": RouteDoc(
        "The caller's chats, newest first (`?page=`)", "chats", None, list[ChatSummary]
    ),
    "chats_search": RouteDoc(
        "Chats whose title or messages hold `?text=`, best first (`?page=`)",
        "chats",
        None,
        list[ChatSearchHit],
    ),
    "chats_get": RouteDoc("A chat with its history", "chats", None, ChatRecord),
    "chats_update": RouteDoc("Merge fields into a chat", "chats", ChatForm, ChatRecord),
    "chats_delete": RouteDoc("Delete a chat", "chats", None, bool),
    "files_upload": RouteDoc(
        "Upload a file (processed in the background)",
        "files",
        UploadForm,
        FileRecord,
        request_media="multipart/form-data",
    ),
    "files_upload_bare": RouteDoc(
        "Upload a file", "files", UploadForm, FileRecord, request_media="multipart/form-data"
    ),
    "files_list": RouteDoc(
        "The caller's files (`?page=`: `{items, total}`; `?filter=` on metadata)",
        "files",
        None,
        list[FileRecord] | FilePage,
    ),
    "files_list_bare": RouteDoc(
        "The caller's files (`?page=`: `{items, total}`; `?filter=` on metadata)",
        "files",
        None,
        list[FileRecord] | FilePage,
    ),
    "files_get": RouteDoc("A file record", "files", None, FileRecord),
    "files_status": RouteDoc(
        "Processing status (`?stream=true` for SSE)", "files", None, FileStatusReply
    ),
    "files_content": RouteDoc(
        "The original bytes", "files", None, bytes, response_media="application/octet-stream"
    ),
    "files_text": RouteDoc("The extracted text", "files", None, dict[str, str]),
    "files_text_update": RouteDoc(
        "Replace the extracted text and index it again", "files", ContentForm, ContentReply
    ),
    "retrieval_process_text": RouteDoc(
        "Text becomes a processed file (in a collection if named)",
        "retrieval",
        ProcessTextForm,
        ProcessTextReply,
    ),
    "knowledge_file_update": RouteDoc(
        "Index one of the collection's files again", "knowledge", FileIdForm, KnowledgeReply
    ),
    "files_delete": RouteDoc("Delete a file, its vectors and links", "files", None, bool),
    "files_cancel": RouteDoc(
        "Cancel a file's processing (owner, admin; body optional): queued at once, running "
        "at its next stage; ends `failed` at stage `cancelled`",
        "files",
        CancelForm,
        FileStatusReply,
    ),
    "files_retry": RouteDoc(
        "Process a failed or cancelled file again (owner, admin); a queued or running "
        "file is answered as it is",
        "files",
        None,
        FileStatusReply,
    ),
    "files_retry_all": RouteDoc(
        "Retry dead-lettered failed files, at most `limit` (admin; body optional)",
        "files",
        RetryAllForm,
        RetryAllReply,
    ),
    "files_failed": RouteDoc(
        "Jobs that failed for good or ran out of deliveries, newest first (admin, `?page=`)",
        "files",
        None,
        FailedPage,
    ),
    "knowledge_create": RouteDoc("Create a collection", "knowledge", KnowledgeForm, KnowledgeReply),
    "knowledge_list": RouteDoc(
        "Readable collections (`?page=`: `{items, total}`)",
        "knowledge",
        None,
        list[KnowledgeReply] | KnowledgePage,
    ),
    "knowledge_list_bare": RouteDoc(
        "Readable collections (`?page=`: `{items, total}`)",
        "knowledge",
        None,
        list[KnowledgeReply] | KnowledgePage,
    ),
    "knowledge_list_writable": RouteDoc(
        "Collections the caller may write", "knowledge", None, list[KnowledgeReply]
    ),
    "knowledge_files": RouteDoc(
        "A page of a collection's files (`?page=`, `?query=` on names, `?filter=`)",
        "knowledge",
        None,
        KnowledgeFileList,
    ),
    "knowledge_batch_add": RouteDoc(
        "Add many files, each with its own outcome",
        "knowledge",
        list[FileIdForm],
        KnowledgeBatchReply,
    ),
    "knowledge_sync_diff": RouteDoc(
        "Compare a local manifest by content hash", "knowledge", SyncDiffForm, SyncDiffReply
    ),
    "knowledge_sync_cleanup": RouteDoc(
        "Drop the files a sync found stale", "knowledge", SyncCleanupForm, StatusReply
    ),
    "knowledge_get": RouteDoc("A collection with its files", "knowledge", None, KnowledgeReply),
    "knowledge_update": RouteDoc("Update a collection", "knowledge", KnowledgeForm, KnowledgeReply),
    "knowledge_access_update": RouteDoc(
        "Change who has access (owner, admin)", "knowledge", AccessForm, KnowledgeReply
    ),
    "knowledge_file_add": RouteDoc("Add a file", "knowledge", FileIdForm, KnowledgeReply),
    "knowledge_file_remove": RouteDoc("Remove a file", "knowledge", FileIdForm, KnowledgeReply),
    "knowledge_reset": RouteDoc("Remove every file", "knowledge", None, KnowledgeReply),
    "knowledge_delete": RouteDoc("Delete a collection", "knowledge", None, bool),
    "retrieval_query_doc": RouteDoc("Search one file", "retrieval", QueryDocForm, QueryReply),
    "retrieval_query_collection": RouteDoc(
        "Search collections", "retrieval", QueryCollectionForm, QueryReply
    ),
    "retrieval_embedding": RouteDoc(
        "The embedding model and its vector index, a rebuild's progress (admin)",
        "retrieval",
        None,
        EmbeddingConfigReply,
    ),
    "groups_list": RouteDoc("Groups (admins: all; others: their own)", "groups", None, list[Group]),
    "groups_create": RouteDoc("Create a group (admin)", "groups", GroupForm, Group),
    "groups_get": RouteDoc("A group (admins, its members)", "groups", None, Group),
    "groups_update": RouteDoc("Update a group (admin)", "groups", GroupForm, Group),
    "groups_users_add": RouteDoc("Add members (admin)", "groups", UserIdsForm, Group),
    "groups_users_remove": RouteDoc("Remove members (admin)", "groups", UserIdsForm, Group),
    "groups_delete": RouteDoc("Delete a group (admin)", "groups", None, bool),
    "presets_create": RouteDoc("Create a workspace model", "presets", PresetForm, PresetReply),
    "presets_list": RouteDoc("Readable workspace models", "presets", None, PresetList),
    "presets_list_0_12": RouteDoc("Readable workspace models", "presets", None, PresetList),
    "presets_get": RouteDoc("A workspace model (`?id=`)", "presets", None, PresetReply),
    "presets_update": RouteDoc(
        "Update a workspace model (`?id=` or the body's id)", "presets", PresetForm, PresetReply
    ),
    "presets_access_update": RouteDoc(
        "Change who has access (owner, admin)", "presets", PresetAccessForm, PresetReply
    ),
    "presets_toggle": RouteDoc("Turn a workspace model on or off", "presets", None, PresetReply),
    "presets_delete": RouteDoc(
        "Delete a workspace model (`?id=` or the body's id)", "presets", PresetIdForm, bool
    ),
    "presets_delete_http": RouteDoc("Delete a workspace model (`?id=`)", "presets", None, bool),
    **_crud("function", FunctionInfo, "functions"),
    **_crud("tool", ToolInfo, "tools"),
    "ollama": RouteDoc(
        "Ollama API pass-through (`api/...`, its OpenAI-compatible `v1/models`, "
        "`v1/chat/completions`, `v1/completions`, `v1/embeddings`; optional `/{url_idx}`); "
        "admin-only: "
        "ps, pull, push, create, copy, delete, blobs",
        "ollama",
        response_media="application/x-ndjson",
    ),
    "console": RouteDoc("The web console", "console", response=str, response_media="text/html"),
    "console_asset": RouteDoc(
        "The web console's scripts, styles and icon",
        "console",
        response=str,
        response_media="text/plain",
    ),
    "console_signin": RouteDoc(
        "Console sign-in: the token goes into an HttpOnly cookie (needs X-Ragway-Console: 1)",
        "console",
        SigninRequest,
        ConsoleUser,
    ),
    "console_signup": RouteDoc(
        "Console sign-up: the token goes into an HttpOnly cookie (needs X-Ragway-Console: 1)",
        "console",
        SignupRequest,
        ConsoleUser,
    ),
    "console_signout": RouteDoc(
        "Console sign-out: clears the session cookie (needs X-Ragway-Console: 1)",
        "console",
        None,
        bool,
    ),
    "openapi": RouteDoc("This document", "docs"),
    "docs": RouteDoc("Swagger UI", "docs", response=str, response_media="text/html"),
    "docs_static": RouteDoc("Swagger UI assets", "docs", response=str, response_media="text/plain"),
}


def openapi_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document for every route `app` serves."""
    access = app[ACCESS]
    types = [ErrorReply]
    for doc in ROUTE_DOCS.values():
        types += [t for t in (doc.request, doc.response) if t is not None]
    schemas, components = msgspec.json.schema_components(
        types, schema_hook=_any_value, ref_template="#/components/schemas/{name}"
    )
    schema_of = {repr(t): s for t, s in zip(types, schemas, strict=True)}
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        resource = route.resource
        if resource is None or (route.method == "HEAD" and _has_get(resource)):
            continue
        name = route.name or resource.name or ""
        doc = ROUTE_DOCS.get(name, RouteDoc(UNDOCUMENTED, "other"))
        level = access.get(name, "user")
        operation: dict[str, Any] = {
            "operationId": f"{name}_{route.method.lower()}",
            "summary": doc.summary,
            "tags": [doc.tag],
            "responses": _responses(doc, schema_of),
        }
        if level == "public":
            operation["security"] = []
        elif level == "admin":
            operation["description"] = "Administrators only."
        params = re.findall(r"{(\w+)", resource.canonical)
        if params:
            operation["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        if doc.request is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {doc.request_media: {"schema": schema_of[repr(doc.request)]}},
            }
        paths.setdefault(resource.canonical, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "ragway", "version": "0.1.0", "description": "Open WebUI's HTTP API"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _responses(doc: RouteDoc, schema_of: dict[str, Any]) -> dict[str, Any]:
    ok = {"type": "object"} if doc.response is None else schema_of[repr(doc.response)]
    error = {"description": "Error", "content": {JSON: {"schema": schema_of[repr(ErrorReply)]}}}
    return {
        "200": {"description": "OK", "content": {doc.response_media: {"schema": ok}}},
        "default": error,
    }


def _any_value(type_: Any) -> dict[str, Any]:
    """`object` (free-form JSON) in a few reply types: any value."""
    if type_ is object:
        return {"description": "any JSON value"}
    raise NotImplementedError(f"no JSON schema for {type_!r}")


def _has_get(resource: web.AbstractResource) -> bool:
    return any(route.method == "GET" for route in resource)
