"""Chat completions: the OpenAI request shape the gateway validates, and the NATS job
the inference-proxy runs.

A stream travels as messages on an inbox the gateway listens on before asking, framed
as `contracts.streams` says: SSE bytes ready to write, then an end message whose body is
a StreamEnd.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from contracts.auth import Principal
from contracts.filters import MetadataFilter

MAX_MESSAGES = 2048
MAX_TOKENS_LIMIT = 1_000_000


class ChatMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    role: Literal["system", "user", "assistant", "tool", "developer", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class FileRef(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An item of the ragway/Open WebUI `files` field."""

    type: Literal["file", "collection"] = "file"
    id: str
    context: str | None = None
    # ragway's: only chunks whose upload metadata passes it (see contracts.filters)
    filter: MetadataFilter | None = None


class ChatCompletionRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The fields ragway reads; unknown OpenAI fields pass through untouched."""

    model: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1, max_length=MAX_MESSAGES)]
    stream: bool = False
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=MAX_TOKENS_LIMIT)] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    stream_options: dict[str, Any] | None = None
    files: list[FileRef] | None = None
    chat_id: str | None = None
    tool_ids: list[str] | None = None


class CompletionJob(msgspec.Struct, frozen=True, kw_only=True):
    """A completion for the inference-proxy. `body` is the OpenAI request JSON as sent
    (or as rewritten by RAG), embedded without re-encoding."""

    principal: Principal
    body: msgspec.Raw
    stream_inbox: str = ""
    stream_id: str = ""
    # the caller reads `StreamAccepted.first` (a caller that does not know it leaves this
    # False, so a stream's first bytes never go where nobody reads them)
    first_in_reply: bool = False
    # the caller reads `StreamEnd.tail` (same reasoning: False sends them as a message)
    tail_in_end: bool = False
    # the caller reads a CompletionReply from CHAT_COMPLETE (False: the completion JSON)
    reply_envelope: bool = False


class BackendRef(msgspec.Struct, frozen=True, kw_only=True):
    """Which configured backend answered: its kind and its index in that kind's list
    (`OPENAI_API_BASE_URLS` / `OLLAMA_BASE_URLS`), never its URL."""

    kind: Literal["openai", "ollama"]
    idx: int


class CompletionReply(msgspec.Struct, frozen=True, kw_only=True):
    """CHAT_COMPLETE's reply when the job asked for it (`reply_envelope`): the OpenAI
    `chat.completion` JSON as the client gets it, and who answered (None: a function
    model, or a tool loop without a backend round)."""

    completion: msgspec.Raw
    backend: BackendRef | None = None


class StreamAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """The reply to CHAT_STREAM once the backend has accepted the request.

    `first`: the stream's first SSE bytes when they came with the backend's answer (the
    caller writes them before the stream's messages); empty otherwise."""

    model: str
    first: bytes = b""
    # who answered (None: a function model); `model` is the fallback's when one answered
    backend: BackendRef | None = None


class StreamEnd(msgspec.Struct, frozen=True, kw_only=True):
    """The last message of a stream: what was said, for chat history and logs.

    `tail`: the stream's closing SSE bytes (the finish chunk, `data: [DONE]`, and the
    chunks that came with the backend's own `[DONE]`) when the caller asked for them here
    (`CompletionJob.tail_in_end`): one or two messages fewer per stream; the caller writes
    them after every message before this one."""

    content: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    error: str | None = None
    tail: bytes = b""
