"""Chats in JetStream KV (`<prefix>_chats`), one owner each, updated with compare-and-set.

Keys are `chat.<user_id>.<chat_id>` (the whole chat), `title.<user_id>.<chat_id>` (its
summary for listing) and `order.<user_id>.<updated_at>.<chat_id>` (its place in the
user's list, `catalog.owners`). Owner-scoped keys make ownership structural: a chat is
only ever looked up under the caller's id, so another user's chat is simply not found.
A page of the list is cut from the user's `order` keys (one server-side filtered request,
no values read) and then reads that page's summaries; the whole list reads
`title.<user_id>.*` through a server-side subject filter (`Bucket.latest`): that user's
small summaries, never another user's chats or any chat body. A search reads the user's
`find.<user_id>.<chat_id>` entries the same way (title and message text, bounded per
chat: `catalog.chat_search`).
"""

from __future__ import annotations

import builtins
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
from nats.js import JetStreamContext

from catalog.buckets import Bucket
from catalog.chat_search import ChatQuery, SearchEntry, message_text
from catalog.owners import OwnerIndex, run_once
from common.errors import RagwayError
from contracts.chats import (
    DEFAULT_TITLE,
    PAGE_SIZE,
    ChatContent,
    ChatRecord,
    ChatSearchHit,
    ChatSummary,
)

_encode = msgspec.json.Encoder().encode
_decode_record = msgspec.json.Decoder(ChatRecord).decode
_decode_summary = msgspec.json.Decoder(ChatSummary).decode
_decode_entry = msgspec.json.Decoder(SearchEntry).decode

NOT_FOUND = "Chat not found"


def now() -> int:
    return int(time.time())


def check_content(chat: dict[str, Any]) -> ChatContent:
    """Validate the parts of `chat` ragway reads; `invalid` naming the field otherwise."""
    try:
        return msgspec.convert(chat, ChatContent)
    except msgspec.ValidationError as exc:
        raise RagwayError("invalid", f"Invalid chat: {exc}") from None


def _title_of(chat: dict[str, Any], fallback: str = DEFAULT_TITLE) -> str:
    title = chat.get("title")
    return title if isinstance(title, str) and title else fallback


class ChatStore:
    """Create, read, list, merge-update and delete the chats of each user."""

    def __init__(self, bucket: Bucket) -> None:
        self._bucket = bucket
        self._order = OwnerIndex(bucket, "order")

    @classmethod
    async def open(
        cls, js: JetStreamContext, prefix: str = "ragway", replicas: int = 1
    ) -> ChatStore:
        store = cls(await Bucket.open(js, f"{prefix}_chats", replicas))
        await store._order.ensure_backfilled(store._backfill_order)
        await run_once(store._bucket, "backfilled.find", store._backfill_search)
        return store

    async def _backfill_search(self) -> None:
        """Write the search entries of the chats stored before search read message text."""
        for value in (await self._bucket.latest("chat.*.*")).values():
            await self._put_search_entry(_decode_record(value))

    async def _backfill_order(self) -> None:
        """Place the chats written before the order index existed (once per bucket)."""
        for key, value in (await self._bucket.latest("title.*.*")).items():
            summary = _decode_summary(value)
            await self._order.add(key.split(".")[1], summary.updated_at, summary.id)

    async def create(
        self, user_id: str, chat: dict[str, Any], folder_id: str | None = None
    ) -> ChatRecord:
        check_content(chat)
        stamp = now()
        record = ChatRecord(
            id=str(uuid.uuid4()),
            user_id=user_id,
            title=_title_of(chat),
            chat={**chat, "title": _title_of(chat)},
            created_at=stamp,
            updated_at=stamp,
            folder_id=folder_id,
        )
        await self._bucket.kv.create(_chat_key(user_id, record.id), _encode(record))
        await self._put_summary(record)
        await self._order.add(user_id, record.updated_at, record.id)
        return record

    async def get(self, user_id: str, chat_id: str) -> ChatRecord:
        """The caller's chat; `not_found` for a missing chat or anyone else's."""
        if not _valid(chat_id):
            raise RagwayError("not_found", NOT_FOUND)
        value = await self._bucket.get(_chat_key(user_id, chat_id))
        if value is None:
            raise RagwayError("not_found", NOT_FOUND)
        return _decode_record(value)

    async def list(self, user_id: str, page: int | None = None) -> list[ChatSummary]:
        """The user's chats, most recently updated first; `page` (from 1) of PAGE_SIZE."""
        if page is None:
            return await self._summaries(user_id)
        chosen = await self._order.page(_token(user_id), (page - 1) * PAGE_SIZE, PAGE_SIZE)
        values = await self._bucket.get_many([_title_key(user_id, c) for c in chosen.ids])
        summaries = [_decode_summary(value) for value in values if value]
        summaries.sort(key=lambda s: (s.updated_at, s.created_at), reverse=True)
        return summaries

    async def search(self, user_id: str, text: str, page: int = 1) -> builtins.list[ChatSearchHit]:
        """`page` (from 1, PAGE_SIZE each) of the user's chats whose title or messages
        hold `text` (any case), best first (`catalog.chat_search`)."""
        found = await self._bucket.latest(f"find.{_token(user_id)}.*")
        entries = (_decode_entry(value) for value in found.values() if value)
        return ChatQuery(text).hits(entries, (page - 1) * PAGE_SIZE, PAGE_SIZE)

    async def _summaries(self, user_id: str) -> builtins.list[ChatSummary]:
        found = await self._bucket.latest(f"title.{_token(user_id)}.*")
        summaries = [_decode_summary(value) for value in found.values() if value]
        summaries.sort(key=lambda s: (s.updated_at, s.created_at), reverse=True)
        return summaries

    async def update(
        self, user_id: str, chat_id: str, change: Callable[[ChatRecord], ChatRecord]
    ) -> ChatRecord:
        """Apply `change` to the current chat atomically (retrying on concurrent writes)."""
        key = _chat_key(user_id, chat_id)
        if not _valid(chat_id):
            raise RagwayError("not_found", NOT_FOUND)

        previous = {"updated_at": 0}  # `change` edits the record in place: keep its old stamp

        def stamped(record: ChatRecord) -> ChatRecord:
            previous["updated_at"] = record.updated_at
            updated = change(record)
            updated.updated_at = now()
            return updated

        busy = RagwayError("unavailable", "The chat is too busy to update")
        changed = await self._bucket.update(key, _decode_record, stamped, busy)
        if changed is None:
            raise RagwayError("not_found", NOT_FOUND)
        after = changed[1]
        await self._put_summary(after)
        await self._order.move(user_id, previous["updated_at"], after.updated_at, chat_id)
        return after

    async def merge(self, user_id: str, chat_id: str, fields: dict[str, Any]) -> ChatRecord:
        """Open WebUI's update: `chat` fields replaced one by one, the rest kept."""
        check_content(fields)

        def merged(record: ChatRecord) -> ChatRecord:
            chat = {**record.chat, **fields}
            record.title = _title_of(chat, record.title)
            record.chat = {**chat, "title": record.title}
            return record

        return await self.update(user_id, chat_id, merged)

    async def delete(self, user_id: str, chat_id: str) -> None:
        record = await self.get(user_id, chat_id)  # not_found for anyone else's
        await self._bucket.purge(_title_key(user_id, chat_id))
        await self._bucket.purge(_find_key(user_id, chat_id))
        await self._bucket.purge(_chat_key(user_id, chat_id))
        await self._order.remove(user_id, record.updated_at, chat_id)

    async def delete_all(self, user_id: str) -> int:
        """Delete every chat of `user_id` (their account is gone); returns how many."""
        token = _token(user_id)
        titles = await self._bucket.latest(f"title.{token}.*")
        found = await self._bucket.latest(f"find.{token}.*")
        chats = await self._bucket.latest(f"chat.{token}.*")
        for key in [*titles, *found, *chats]:
            await self._bucket.purge(key)
        return len(chats)

    async def _put_summary(self, record: ChatRecord) -> None:
        summary = ChatSummary(
            id=record.id,
            title=record.title,
            updated_at=record.updated_at,
            created_at=record.created_at,
        )
        await self._bucket.put(_title_key(record.user_id, record.id), _encode(summary))
        await self._put_search_entry(record)

    async def _put_search_entry(self, record: ChatRecord) -> None:
        entry = SearchEntry(
            id=record.id,
            title=record.title,
            updated_at=record.updated_at,
            created_at=record.created_at,
            text=message_text(record.chat),
        )
        await self._bucket.put(_find_key(record.user_id, record.id), _encode(entry))


def _token(user_id: str) -> str:
    if not _valid(user_id):
        raise RagwayError("invalid", "This user id cannot own chats")
    return user_id


def _chat_key(user_id: str, chat_id: str) -> str:
    return f"chat.{_token(user_id)}.{chat_id}"


def _title_key(user_id: str, chat_id: str) -> str:
    return f"title.{_token(user_id)}.{chat_id}"


def _find_key(user_id: str, chat_id: str) -> str:
    return f"find.{_token(user_id)}.{chat_id}"


def _valid(key: str) -> bool:
    return (
        bool(key)
        and len(key) <= 128
        and key.isascii()
        and all(c.isalnum() or c in "-_" for c in key)
    )


def append_message(chat: dict[str, Any], message: dict[str, Any]) -> None:
    """Add `message` under the history's current leaf, make it the leaf, and list it.

    `message` needs an `id`; `parentId`/`childrenIds` are set here. A history that is
    missing or malformed is started afresh rather than failing the completion.
    """
    history = chat.get("history")
    if not isinstance(history, dict) or not isinstance(history.get("messages"), dict):
        history = {"currentId": None, "messages": {}}
        chat["history"] = history
    nodes: dict[str, Any] = history["messages"]
    parent_id = history.get("currentId")
    parent = nodes.get(parent_id) if isinstance(parent_id, str) else None
    if isinstance(parent, dict):
        children = parent.get("childrenIds")
        parent["childrenIds"] = [*(children if isinstance(children, list) else []), message["id"]]
    else:
        parent_id = None
    node = {**message, "parentId": parent_id, "childrenIds": []}
    nodes[message["id"]] = node
    history["currentId"] = message["id"]
    listed = chat.get("messages")
    chat["messages"] = [*(listed if isinstance(listed, list) else []), node]
