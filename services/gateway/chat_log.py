"""Recording a completion made with `chat_id` into that chat's history.

The chat is checked before the model is called (someone else's or an unknown chat is a
404 then); the user message and the final reply are appended together once the answer
is complete. A failure to record is logged, never turned into a failed completion: the
caller still gets the answer it paid for.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog

from catalog.chats import ChatStore, append_message
from common.errors import RagwayError
from contracts.chat import ChatCompletionRequest
from contracts.chats import ChatRecord

log = structlog.get_logger()

# Open WebUI's temporary chats: never stored, so nothing to append to
TEMPORARY_PREFIX = "local:"


@dataclass
class ChatAppend:
    store: ChatStore
    user_id: str
    chat_id: str
    model: str
    user_content: Any

    @classmethod
    async def start(
        cls, store: ChatStore, user_id: str, request: ChatCompletionRequest
    ) -> ChatAppend | None:
        """None without a (stored) `chat_id`; `not_found` unless the caller owns the chat."""
        chat_id = request.chat_id
        if not chat_id or chat_id.startswith(TEMPORARY_PREFIX):
            return None
        await store.get(user_id, chat_id)
        users = [m for m in request.messages if m.role == "user"]
        content = users[-1].content if users else ""
        return cls(store, user_id, chat_id, request.model, content or "")

    async def finish(
        self,
        content: str,
        usage: dict[str, Any] | None,
        sources: list[Any] | None,
        model: str | None = None,
    ) -> None:
        stamp = int(time.time())
        asked: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "role": "user",
            "content": self.user_content,
            "timestamp": stamp,
            "models": [self.model],
        }
        answered: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "role": "assistant",
            "content": content,
            "model": model or self.model,
            "modelName": model or self.model,
            "modelIdx": 0,
            "timestamp": stamp,
            "done": True,
        }
        if sources:
            answered["sources"] = sources
        if usage:
            answered["usage"] = usage

        def appended(record: ChatRecord) -> ChatRecord:
            append_message(record.chat, asked)
            append_message(record.chat, answered)
            return record

        try:
            await self.store.update(self.user_id, self.chat_id, appended)
        except RagwayError as exc:
            log.warning("chat_append_failed", chat_id=self.chat_id, code=exc.code)
        except Exception:
            log.exception("chat_append_failed", chat_id=self.chat_id)

    async def finish_with_completion(self, reply: bytes, sources: list[Any] | None) -> None:
        """Append from a non-stream `chat.completion` reply."""
        try:
            completion = msgspec.json.decode(reply, type=_Completion)
        except msgspec.DecodeError:
            log.warning("chat_append_skipped", chat_id=self.chat_id, reason="unreadable reply")
            return
        message = completion.choices[0].message if completion.choices else None
        content = message.content if message is not None else None
        await self.finish(
            content if isinstance(content, str) else "",
            completion.usage,
            sources,
            completion.model,
        )


class _Message(msgspec.Struct):
    content: Any = None


class _Choice(msgspec.Struct):
    message: _Message | None = None


class _Completion(msgspec.Struct):
    choices: list[_Choice] = msgspec.field(default_factory=list)
    usage: dict[str, Any] | None = None
    model: str | None = None
