"""Finding a user's chats by title and message text, as Open WebUI 0.12.4's
`get_chats_by_user_id_and_search_text` does, over one small entry per chat.

Each chat keeps a search entry (`find.<user>.<chat>` in the chats bucket, written with
its summary): its title, stamps and the text of its messages, cut at `MAX_TEXT`
characters. A search reads that user's entries through a server-side subject filter
(never another user's, never a chat body) and matches them here, so its cost is bounded
by the user's chats times `MAX_TEXT`, whatever the chats themselves hold.

Matching follows Open WebUI: the whole query (lower case) in the title or a message, or
else each of its words (`[a-z0-9]+`) in the title or a message; whole-query matches come
first, then the most recently updated. The snippet is the message text around the first
needle found, 200 characters at most.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec

from contracts.chats import ChatSearchHit

# Message text kept per chat for search (characters); what lies beyond is not found.
MAX_TEXT = 32_768
SNIPPET_LENGTH = 200
# Between two messages in the kept text (no query word or phrase matches across it).
SEPARATOR = "\x1e"
_WORD = re.compile(r"[a-z0-9]+")


class SearchEntry(msgspec.Struct, kw_only=True):
    """What a search reads of one chat."""

    id: str
    title: str
    updated_at: int
    created_at: int
    text: str = ""


def message_text(chat: dict[str, Any]) -> str:
    """The chat's message contents, `SEPARATOR` between them, at most `MAX_TEXT` characters."""
    parts: list[str] = []
    size = 0
    for content in _contents(chat):
        if size >= MAX_TEXT:
            break
        parts.append(content)
        size += len(content) + 1
    return SEPARATOR.join(part.replace(SEPARATOR, " ") for part in parts)[:MAX_TEXT]


def _contents(chat: dict[str, Any]) -> Iterable[str]:
    history = chat.get("history")
    messages: Any = history.get("messages") if isinstance(history, dict) else None
    if not messages:
        messages = chat.get("messages") or []
    if isinstance(messages, dict):
        messages = messages.values()
    if not isinstance(messages, Iterable):
        return
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            yield content
        elif isinstance(content, list):  # OpenAI's content parts: their text
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    yield part["text"]


class ChatQuery:
    """One search: the whole query and its words, in lower case."""

    def __init__(self, text: str) -> None:
        self.phrase = " ".join(text.lower().split())
        self.terms = [t for t in dict.fromkeys(_WORD.findall(self.phrase)) if t != self.phrase]

    def rank(self, entry: SearchEntry) -> int | None:
        """0: the whole query is in the chat; 1: each of its words is; None: no match."""
        title, text = entry.title.lower(), entry.text.lower()
        if self.phrase in title or self.phrase in text:
            return 0
        if self.terms and all(t in title or t in text for t in self.terms):
            return 1
        return None

    def snippet(self, text: str) -> str | None:
        """Open WebUI's `chat_search_snippet`: around the first needle in a message."""
        messages = text.split(SEPARATOR)
        for needle in dict.fromkeys([self.phrase, *self.terms]):
            for content in messages:
                index = content.lower().find(needle)
                if index != -1:
                    return _around(content, index, len(needle))
        return None

    def hits(self, entries: Iterable[SearchEntry], skip: int, limit: int) -> list[ChatSearchHit]:
        """The matching chats, best first, `limit` of them after the first `skip`."""
        ranked = [(rank, entry) for entry in entries if (rank := self.rank(entry)) is not None]
        ranked.sort(key=lambda pair: (pair[0], -pair[1].updated_at, pair[1].id))
        return [
            ChatSearchHit(
                id=entry.id,
                title=entry.title,
                updated_at=entry.updated_at,
                created_at=entry.created_at,
                snippet=self.snippet(entry.text),
            )
            for _, entry in ranked[skip : skip + limit]
        ]


def _around(text: str, index: int, length: int) -> str:
    start = max(index - SNIPPET_LENGTH // 2, 0)
    end = min(start + SNIPPET_LENGTH, len(text))
    if index + length > end:
        end = min(index + length, len(text))
        start = max(end - SNIPPET_LENGTH, 0)
    snippet = " ".join(text[start:end].split())
    return f"{'...' if start else ''}{snippet}{'...' if end < len(text) else ''}"
