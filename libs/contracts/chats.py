"""Chats (multi-turn conversations) as Open WebUI's HTTP API shapes them.

`chat` stays a free-form JSON object: Open WebUI's clients keep their own fields in it
(models, params, files, tags…) and expect them back. Only the parts ragway reads or
writes are typed (`ChatContent`, `HistoryMessage`), and decoding with those types is
how a body with a malformed `history` or `messages` is refused with a field name.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

PAGE_SIZE = 60
DEFAULT_TITLE = "New Chat"


class ChatForm(msgspec.Struct, kw_only=True):
    """Body of `POST /api/v1/chats/new` and `POST /api/v1/chats/{id}`."""

    chat: dict[str, Any]
    folder_id: str | None = None


class HistoryMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One node of `chat.history.messages` (the fields ragway reads; others are kept)."""

    id: str
    parentId: str | None = None
    childrenIds: list[str] = msgspec.field(default_factory=list)
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] = ""
    model: str | None = None
    timestamp: int | None = None
    sources: list[dict[str, Any]] | None = None
    usage: dict[str, Any] | None = None


class History(msgspec.Struct, kw_only=True):
    currentId: str | None = None
    messages: dict[str, HistoryMessage] = msgspec.field(default_factory=dict)


class ChatContent(msgspec.Struct, kw_only=True):
    """What ragway checks in `chat` (unknown fields pass)."""

    title: str | None = None
    history: History | None = None
    messages: list[dict[str, Any]] | None = None


class ChatRecord(msgspec.Struct, kw_only=True):
    """A stored chat; also the `GET /api/v1/chats/{id}` reply."""

    id: str
    user_id: str
    title: str
    chat: dict[str, Any]
    created_at: int
    updated_at: int
    archived: bool = False
    pinned: bool = False
    share_id: str | None = None
    folder_id: str | None = None
    meta: dict[str, Any] = msgspec.field(default_factory=dict)


class ChatSummary(msgspec.Struct, kw_only=True):
    """An item of `GET /api/v1/chats/` (Open WebUI's ChatTitleIdResponse)."""

    id: str
    title: str
    updated_at: int
    created_at: int


class ChatSearchHit(msgspec.Struct, kw_only=True):
    """An item of `GET /api/v1/chats/search` (ChatTitleIdResponse with its `snippet`:
    the message text around what was searched for; None when only the title matched)."""

    id: str
    title: str
    updated_at: int
    created_at: int
    snippet: str | None = None
